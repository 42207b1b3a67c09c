from __future__ import annotations

import pytest
import yaml

from netlab.errors import ConfigError
from proxy.frontends.file import FileFrontend, parse_objects
from proxy.model import ServicePortName, Snapshot
from proxy.proxier import Proxier
from tests.unit.proxy.objects import endpoint, endpoint_slice, service

WEB = ServicePortName("default", "web", "", "TCP")


class RecordingMode:
    name = "recording"

    def __init__(self) -> None:
        self.syncs: list[tuple[Snapshot, frozenset | None]] = []

    def sync(self, snapshot, changed):
        self.syncs.append((snapshot, changed))

    def cleanup(self) -> None: ...
    def close(self) -> None: ...
    def show(self) -> str:
        return ""


def write(path, objs):
    path.write_text(yaml.safe_dump_all(objs))


def test_file_drives_the_proxier(tmp_path):
    f = tmp_path / "services.yaml"
    write(f, [service("web", "10.96.0.10"), endpoint_slice("web", [endpoint("10.244.1.2")])])
    mode = RecordingMode()
    p = Proxier(mode, min_sync_period=0)
    fe = FileFrontend(p, f)
    fe.poll()
    p.sync(True)
    snap, changed = mode.syncs[-1]
    assert changed is None and snap.endpoints_of(WEB)[0].ip == "10.244.1.2"
    write(f, [service("web", "10.96.0.10"), endpoint_slice("web", [endpoint("10.244.1.3")])])
    fe.poll()
    p.sync(False)
    snap, changed = mode.syncs[-1]
    assert changed == {WEB} and snap.endpoints_of(WEB)[0].ip == "10.244.1.3"
    # a broken file keeps the old state
    f.write_text("kind: Service\nmetadata: {name: web}\nspec: {clusterIP: nope, ports: [{port: 80}]}\n")
    fe.poll()
    assert "spec.clusterIP" in (fe.last_error or "")
    p.sync(False)
    assert len(mode.syncs) == 2


def test_list_documents_and_errors():
    text = yaml.safe_dump({"kind": "List", "items": [service("web", "10.96.0.10")]})
    services, slices = parse_objects(text, "f.yaml")
    assert len(services) == 1 and slices == []
    with pytest.raises(ConfigError, match=r"^f.yaml: document 1: kind: must be Service or EndpointSlice"):
        parse_objects("kind: Pod\n", "f.yaml")
    with pytest.raises(ConfigError, match="f.yaml: line 2 not valid YAML"):
        parse_objects("kind: [\n", "f.yaml")
    with pytest.raises(ConfigError, match="appears twice"):
        parse_objects(yaml.safe_dump_all([service("a", "10.96.0.1"), service("a", "10.96.0.2")]), "f.yaml")
