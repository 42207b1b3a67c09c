"""The file frontend: Services and EndpointSlices from a YAML file, reloaded when it changes.

The file holds Kubernetes objects exactly as `kubectl apply` would take them: `Service` and
`discovery.k8s.io/v1` `EndpointSlice` documents, several per file (`---`) or inside a `List`.
This lets scenarios and tests drive a proxy with no control plane at all, and what they write
carries over unchanged to a cluster.

A reload replaces the whole set (objects missing from the file are deleted). A file that does
not parse or validate is refused as a whole with one line naming the file, the object and the
field, and the proxy keeps serving what it had.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from netlab.errors import ConfigError
from proxy.objects import parse_endpoint_slice, parse_service
from proxy.proxier import Proxier

log = logging.getLogger(__name__)

Objects = tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]


def parse_objects(text: str, source: str) -> Objects:
    """Split YAML text into (services, endpoint slices), validating every object."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}:{where} not valid YAML: {getattr(e, 'problem', e)}") from None
    items: list[tuple[str, Any]] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if isinstance(doc, Mapping) and doc.get("kind") == "List":
            for j, item in enumerate(doc.get("items") or []):
                items.append((f"document {i + 1} items[{j}]", item))
        else:
            items.append((f"document {i + 1}", doc))
    services: list[Mapping[str, Any]] = []
    slices: list[Mapping[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for where, obj in items:
        if not isinstance(obj, Mapping):
            raise ConfigError(f"{source}: {where}: must be a mapping with a kind")
        kind = obj.get("kind")
        try:
            if kind == "Service":
                parse_service(obj)
                services.append(obj)
            elif kind == "EndpointSlice":
                parse_endpoint_slice(obj)
                slices.append(obj)
            else:
                raise ConfigError(f"{where}: kind: must be Service or EndpointSlice, not {kind!r}")
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        meta = obj.get("metadata") or {}
        ident = (str(kind), f"{meta.get('namespace') or 'default'}/{meta.get('name')}")
        if ident in seen:
            raise ConfigError(f"{source}: {where}: {ident[0]} {ident[1]} appears twice")
        seen.add(ident)
    return services, slices


def load_objects(path: Path) -> Objects:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return parse_objects(text, str(path))


class FileFrontend:
    """Feeds a proxier from `path`, polling for changes every `interval` seconds."""

    def __init__(self, proxier: Proxier, path: Path, interval: float = 0.2) -> None:
        self.proxier = proxier
        self.path = path
        self.interval = interval
        self._stamp: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self.last_error: str | None = None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> bool:
        """Read the file now; raises ConfigError on a bad file. True when it was (re)loaded."""
        stamp = self._file_stamp()
        if stamp is not None and stamp == self._stamp:
            return False
        services, slices = load_objects(self.path)
        self._stamp = stamp
        self.proxier.replace_all(services, slices)
        return True

    def poll(self) -> None:
        """Reload if the file changed; a bad file is logged and the old state kept."""
        try:
            if self.load():
                self.last_error = None
                log.info("loaded %s", self.path)
        except ConfigError as e:
            self._stamp = self._file_stamp()  # report a bad version once
            if str(e) != self.last_error:
                log.error("%s (keeping the previous services)", e)
            self.last_error = str(e)

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
