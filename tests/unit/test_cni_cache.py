"""The libcni-shaped result cache."""

from __future__ import annotations

import base64
import json

from netlab.cni.cache import CachedAttachment, ResultCache


def test_cache_file_matches_libcni(tmp_path):
    cache = ResultCache(tmp_path / "results")
    entry = CachedAttachment(
        network="podnet",
        container_id="abc",
        ifname="eth0",
        netns="/run/netns/p",
        cni_args=[("K8S_POD_NAME", "web")],
        capability_args={"portMappings": []},
        result={"cniVersion": "1.0.0", "ips": []},
        config=b'{"name":"podnet"}',
    )
    cache.save(entry)
    path = tmp_path / "results" / "podnet-abc-eth0"
    doc = json.loads(path.read_text())
    assert doc["kind"] == "cniCacheV1" and doc["containerId"] == "abc" and doc["ifName"] == "eth0"
    assert doc["networkName"] == "podnet" and doc["netns"] == "/run/netns/p"
    assert base64.b64decode(doc["config"]) == b'{"name":"podnet"}'
    assert doc["cniArgs"] == [["K8S_POD_NAME", "web"]]
    assert cache.load("podnet", "abc", "eth0") == entry
    assert [a.container_id for a in cache.attachments("podnet")] == ["abc"]
    assert cache.attachments("other") == []
    assert cache.delete("podnet", "abc", "eth0") is True
    assert cache.delete("podnet", "abc", "eth0") is False
    assert cache.load("podnet", "abc", "eth0") is None


def test_corrupt_entries_are_ignored(tmp_path):
    (tmp_path / "podnet-x-eth0").write_text("{")
    (tmp_path / "podnet-y-eth0").write_text('{"kind": "other"}')
    cache = ResultCache(tmp_path)
    assert cache.load("podnet", "x", "eth0") is None and cache.attachments() == []
    assert ResultCache(tmp_path / "missing").attachments() == []
