"""The apiserver's JSON codec: orjson's speed, the standard library's answers."""

from __future__ import annotations

import json

import pytest

from netlab.cluster import codec


def test_round_trip_is_compact_json() -> None:
    obj = {
        "metadata": {"name": "web", "labels": {"app": "wéb"}},
        "spec": {"replicas": 3, "x": [1.5, None, True]},
    }
    raw = codec.dumps(obj)
    assert isinstance(raw, bytes) and b" " not in raw
    assert json.loads(raw) == obj
    assert codec.loads(raw) == obj and codec.loads(raw.decode()) == obj


def test_what_orjson_refuses_goes_through_the_standard_library() -> None:
    big = {"n": 2**70, 1: "int key", None: "null key"}
    assert json.loads(codec.dumps(big)) == {"n": 2**70, "1": "int key", "null": "null key"}
    # beyond 64 bits a number decodes as a float, as in upstream's unstructured JSON
    assert codec.loads(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}
    assert codec.loads(b'{"x": NaN}')["x"] != codec.loads(b'{"x": NaN}')["x"]  # json's NaN


@pytest.mark.parametrize("bad", [b"{", b'{"a": }', b"nul", b"\xff"])
def test_invalid_json_fails_with_the_standard_librarys_message(bad: bytes) -> None:
    with pytest.raises(ValueError) as ours:
        codec.loads(bad)
    with pytest.raises(ValueError) as theirs:
        json.loads(bad)
    assert str(ours.value) == str(theirs.value)
