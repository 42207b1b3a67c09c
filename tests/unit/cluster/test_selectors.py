"""Label and field selector grammar and matching."""

from __future__ import annotations

import pytest

from netlab.cluster.selectors import (
    parse_field_selector,
    parse_label_selector,
    selector_from_object,
    selector_to_string,
)
from netlab.cluster.status import ApiError


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),  # != also matches objects without the key
        ("app!=web", {"app": "web"}, False),
        ("tier in (fe, be)", {"tier": "be"}, True),
        ("tier notin (fe,be)", {}, True),
        ("tier notin (fe,be)", {"tier": "fe"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("app=web,tier in (fe),!canary", {"app": "web", "tier": "fe"}, True),
        ("app=web,tier in (fe),!canary", {"app": "web", "tier": "fe", "canary": "1"}, False),
        ("example.com/role=x", {"example.com/role": "x"}, True),
        ("", {"anything": "1"}, True),
    ],
)
def test_label_selector(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["a=b,", "-bad=x", "a=b c", "a in ()", "a=" + "x" * 64])
def test_bad_label_selector_is_400(text: str) -> None:
    with pytest.raises(ApiError) as e:
        parse_label_selector(text)
    assert e.value.code == 400


def test_object_selector() -> None:
    sel = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}],
    }
    s = selector_from_object(sel)
    assert s.matches({"app": "web"}) and not s.matches({"app": "web", "env": "dev"})
    assert selector_to_string(sel) == "app=web,env notin (dev)"
    with pytest.raises(ValueError, match="operator"):
        selector_from_object({"matchExpressions": [{"key": "a", "operator": "Near"}]})


def test_field_selector() -> None:
    pod = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"nodeName": ""},
        "status": {"phase": "Running"},
    }
    assert parse_field_selector("spec.nodeName=", "pods").matches(pod)
    assert parse_field_selector("metadata.name=web,status.phase!=Failed", "pods").matches(pod)
    assert not parse_field_selector("status.phase==Pending", "pods").matches(pod)
    ev = {
        "metadata": {"name": "e"},
        "involvedObject": {"uid": "u1", "name": "web"},
        "source": {"component": "kubelet"},
    }
    assert parse_field_selector("involvedObject.uid=u1,source=kubelet", "events").matches(ev)
    with pytest.raises(ApiError) as e:
        parse_field_selector("spec.nodeName=x", "configmaps")
    assert e.value.code == 400 and "not a known field selector" in e.value.message
