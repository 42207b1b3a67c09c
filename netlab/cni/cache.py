"""The runtime's cache of ADD results, in libcni's on-disk format (`cniCacheV1`).

One file per attachment, `<dir>/<network>-<containerID>-<ifname>`, holding
`{"kind": "cniCacheV1", "containerId", "config", "ifName", "networkName", "netns", "cniArgs",
"capabilityArgs", "result"}` where `config` is the conflist's bytes base64-encoded (Go's
`[]byte`). Keeping libcni's format means the files read the same as a containerd or CRI-O
node's `/var/lib/cni/results`, which is what a lab is for. The cache supplies `prevResult`
for CHECK and DEL and lists the attachments GC considers.

Files are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE_KIND = "cniCacheV1"


@dataclass
class CachedAttachment:
    network: str
    container_id: str
    ifname: str
    netns: str = ""
    cni_args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    config: bytes = b""


class ResultCache:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def path(self, network: str, container_id: str, ifname: str) -> Path:
        return self.dir / f"{network}-{container_id}-{ifname}"

    def save(self, entry: CachedAttachment) -> None:
        doc: dict[str, Any] = {
            "kind": CACHE_KIND,
            "containerId": entry.container_id,
            "config": base64.b64encode(entry.config).decode(),
            "ifName": entry.ifname,
            "networkName": entry.network,
        }
        if entry.netns:
            doc["netns"] = entry.netns
        if entry.cni_args:
            doc["cniArgs"] = [[k, v] for k, v in entry.cni_args]
        if entry.capability_args:
            doc["capabilityArgs"] = entry.capability_args
        if entry.result is not None:
            doc["result"] = entry.result
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(entry.network, entry.container_id, entry.ifname)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def load(self, network: str, container_id: str, ifname: str) -> CachedAttachment | None:
        return self._read(self.path(network, container_id, ifname))

    def delete(self, network: str, container_id: str, ifname: str) -> bool:
        try:
            self.path(network, container_id, ifname).unlink()
        except FileNotFoundError:
            return False
        return True

    def attachments(self, network: str | None = None) -> list[CachedAttachment]:
        """Every readable cached attachment (of `network` when given), sorted by file name."""
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith("."):
                continue
            entry = self._read(self.dir / name)
            if entry and (network is None or entry.network == network):
                out.append(entry)
        return out

    @staticmethod
    def _read(path: Path) -> CachedAttachment | None:
        """The entry, or None when missing or unreadable (a corrupt cache must not block DEL)."""
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("kind") != CACHE_KIND:
            return None
        config = b""
        with contextlib.suppress(ValueError, TypeError):
            config = base64.b64decode(doc.get("config") or "")
        result = doc.get("result")
        return CachedAttachment(
            network=str(doc.get("networkName", "")),
            container_id=str(doc.get("containerId", "")),
            ifname=str(doc.get("ifName", "")),
            netns=str(doc.get("netns") or ""),
            cni_args=[(str(k), str(v)) for k, v in doc.get("cniArgs") or []],
            capability_args=dict(doc.get("capabilityArgs") or {}),
            result=result if isinstance(result, dict) else None,
            config=config,
        )
