"""The apiserver frontend: list and watch Services and EndpointSlices, as kube-proxy does.

One loop per kind: list (the complete set replaces what the tracker had, so objects deleted
while the watch was down disappear too), then watch from the list's resourceVersion, feeding
every event to the tracker. A watch that ends is resumed from the last resourceVersion seen;
`410 Gone` (the version was compacted) or any error means a fresh list after a short pause.
The proxier syncs only after both kinds have been listed once.

An object the model cannot use (a malformed Service, an IPv6 slice's oddities) is logged and
skipped on its own; it never stops the loop or hides the other objects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from netlab.cluster.client import ApiClient, Gone
from netlab.errors import ConfigError
from proxy.objects import parse_endpoint_slice, parse_service
from proxy.proxier import Proxier

log = logging.getLogger(__name__)

SERVICES = "services"
SLICES = "endpointslices.discovery.k8s.io"
WATCH_TIMEOUT = 300  # seconds; the server ends the stream and we resume from resourceVersion
RETRY = 1.0


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


class ApiserverFrontend:
    def __init__(
        self,
        proxier: Proxier,
        client: ApiClient | None = None,
        kubeconfig: Path | None = None,
        watch_timeout: int = WATCH_TIMEOUT,
    ) -> None:
        if client is None:
            if kubeconfig is None:
                raise ConfigError("the apiserver frontend needs a kubeconfig")
            client = ApiClient.from_kubeconfig(kubeconfig)
        self.client = client
        self.proxier = proxier
        self.watch_timeout = watch_timeout
        self._stop = threading.Event()

    def _usable(self, kind: str, items: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        parse: Callable[[Mapping[str, Any]], object] = (
            parse_service if kind == SERVICES else parse_endpoint_slice
        )
        out = []
        for obj in items:
            try:
                parse(obj)
            except ConfigError as e:
                log.warning("skipping %s", e)
                continue
            out.append(obj)
        return out

    def _watch_kind(self, kind: str) -> None:
        replace = self.proxier.replace_services if kind == SERVICES else self.proxier.replace_slices
        update = self.proxier.update_service if kind == SERVICES else self.proxier.update_slice
        while not self._stop.is_set():
            try:
                listed = self.client.list(kind)
                replace(self._usable(kind, listed.get("items") or []))
                rv = (listed.get("metadata") or {}).get("resourceVersion", "")
                while not self._stop.is_set():
                    for ev in self.client.watch(
                        kind, resource_version=rv, timeout_seconds=self.watch_timeout, bookmarks=True
                    ):
                        rv = (ev.object.get("metadata") or {}).get("resourceVersion") or rv
                        if ev.type == "BOOKMARK":
                            continue
                        obj = None if ev.type == "DELETED" else ev.object
                        if obj is not None and not self._usable(kind, [obj]):
                            obj = None  # an unusable version counts as gone
                        update(_key(ev.object), obj)
                        if self._stop.is_set():
                            return
            except Gone:
                log.info("%s watch expired; listing again", kind)
            except Exception as e:  # the apiserver restarting, a network blip
                if self._stop.is_set():
                    return
                log.warning("%s watch failed (%s); listing again in %.0f s", kind, e, RETRY)
                self._stop.wait(RETRY)

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._watch_kind, args=(kind,), name=f"watch-{kind}", daemon=True)
            for kind in (SERVICES, SLICES)
        ]
        for t in threads:
            t.start()
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        self.client.close()  # ends blocked watch streams
