"""A small synchronous client of our apiserver for netlab's own components.

The scheduler, controllers and kubelets talk to the apiserver through this, the way upstream
components use client-go: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, plus
`bind` for the scheduler. It authenticates with a bearer token and verifies the server with the
CA, both taken from a kubeconfig. Errors come back as `netlab.cluster.status.ApiError` built
from the server's `Status` (so `e.code == 409` means a conflict); a watch whose
resourceVersion is too old raises `Gone`, and the caller re-lists.

Resources are named by plural, optionally qualified by group (`pods`, `deployments`,
`leases.coordination.k8s.io`). Built on `requests` (already a dependency) rather than the
official client, which is large and validates responses against its own models.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from netlab.cluster import resources
from netlab.cluster.kubeconfig import KubeConfig, load_kubeconfig
from netlab.cluster.resources import Resource
from netlab.cluster.status import ApiError, Cause
from netlab.errors import ConfigError, Unavailable

Obj = dict[str, Any]
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


class Gone(ApiError):
    """The resourceVersion asked for has been compacted away: list again."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Obj


def resolve(resource: str) -> Resource:
    plural, _, group = resource.partition(".")
    for r in resources.RESOURCES:
        if r.plural == plural and (not group or r.group == group):
            return r
    raise ConfigError(f"unknown resource {resource!r}")


def _error(resp: requests.Response) -> ApiError:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict) or body.get("kind") != "Status":
        return ApiError(resp.status_code, "Unknown", f"{resp.status_code}: {resp.text[:200]}")
    details = body.get("details") or {}
    causes = [
        Cause(c.get("field", ""), c.get("message", ""), c.get("reason", ""))
        for c in details.get("causes") or []
    ]
    cls = Gone if resp.status_code == 410 else ApiError
    return cls(
        resp.status_code,
        body.get("reason", ""),
        body.get("message", ""),
        details.get("kind", ""),
        details.get("name", ""),
        causes,
    )


class ApiClient:
    def __init__(
        self, server: str, token: str, ca_pem: bytes, timeout: float = 30.0, pool_size: int = 10
    ) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        # one kept-alive connection per thread that calls at once (watches, a binding pool)
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=pool_size)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._session.headers["Accept"] = "application/json"
        self._ca_file: str | None = None
        if self.server.startswith("https://"):
            if not ca_pem:
                raise ConfigError("an https apiserver needs a CA certificate to verify it")
            ssl.create_default_context(cadata=ca_pem.decode())  # a clear error for a bad CA, now
            fd, self._ca_file = tempfile.mkstemp(prefix="netlab-ca-", suffix=".crt")
            with os.fdopen(fd, "wb") as f:
                f.write(ca_pem)

    @classmethod
    def from_kubeconfig(cls, path: Path, timeout: float = 30.0, pool_size: int = 10) -> ApiClient:
        kc: KubeConfig = load_kubeconfig(path)
        return cls(kc.server, kc.token, kc.ca_pem, timeout, pool_size)

    def close(self) -> None:
        self._session.close()
        if self._ca_file:
            Path(self._ca_file).unlink(missing_ok=True)
            self._ca_file = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plumbing ----------------------------------------------------------------------------

    def path(
        self,
        resource: str,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        r = resolve(resource)
        base = f"/api/{r.version}" if not r.group else f"/apis/{r.group}/{r.version}"
        if r.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        elif r.namespaced and name:
            raise ConfigError(f"{r.plural} are namespaced: give a namespace")
        base += f"/{r.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stream: bool = False,
        timeout: float | None = None,
    ) -> requests.Response:
        headers = {"Content-Type": content_type} if body is not None else {}
        data = json.dumps(body) if body is not None else None
        try:
            resp = self._session.request(
                method,
                self.server + path,
                params=params,
                data=data,
                headers=headers,
                stream=stream,
                timeout=timeout or self.timeout,
                # explicit: a session-level `verify` loses to REQUESTS_CA_BUNDLE in the environment
                verify=self._ca_file or True,
            )
        except requests.RequestException as e:
            reason = str(e).rsplit(": ", 1)[-1].strip("')\"") or type(e).__name__
            raise Unavailable(f"apiserver at {self.server} is unreachable: {reason}") from None
        if resp.status_code >= 400:
            raise _error(resp)
        return resp

    # verbs -------------------------------------------------------------------------------

    def get(self, resource: str, name: str, namespace: str | None = None) -> Obj:
        return dict(self.request("GET", self.path(resource, namespace, name)).json())

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> Obj:
        params = {
            k: v
            for k, v in (
                ("labelSelector", label_selector),
                ("fieldSelector", field_selector),
                ("limit", limit or ""),
                ("continue", continue_token),
                ("resourceVersion", resource_version),
            )
            if v
        }
        return dict(self.request("GET", self.path(resource, namespace), params=params).json())

    def create(self, resource: str, obj: Obj, namespace: str | None = None) -> Obj:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return dict(self.request("POST", self.path(resource, ns), body=obj).json())

    def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj:
        meta = obj.get("metadata") or {}
        path = self.path(resource, meta.get("namespace"), meta["name"], subresource)
        return dict(self.request("PUT", path, body=obj).json())

    def patch(
        self,
        resource: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        field_manager: str = "",
    ) -> Obj:
        params = {"fieldManager": field_manager} if field_manager else None
        resp = self.request(
            "PATCH",
            self.path(resource, namespace, name, subresource),
            params=params,
            body=patch,
            content_type=PATCH_TYPES[patch_type],
        )
        return dict(resp.json())

    def delete(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        *,
        grace_period: int | None = None,
        propagation: str | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> Obj:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if propagation:
            body["propagationPolicy"] = propagation
        if preconditions:
            body["preconditions"] = preconditions
        return dict(self.request("DELETE", self.path(resource, namespace, name), body=body).json())

    def bind(self, namespace: str, pod: str, node: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.request("POST", self.path("pods", namespace, pod, "binding"), body=body)

    def watch(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 0,
        bookmarks: bool = False,
    ) -> Iterator[WatchEvent]:
        """Events until the server ends the stream (`timeout_seconds`); `Gone` when too old.

        Without `resource_version` the stream starts with an ADDED event per existing object."""
        params: dict[str, Any] = {"watch": "true"}
        for k, v in (
            ("resourceVersion", resource_version),
            ("labelSelector", label_selector),
            ("fieldSelector", field_selector),
            ("timeoutSeconds", timeout_seconds or ""),
        ):
            if v:
                params[k] = v
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        read_timeout = (timeout_seconds + 30) if timeout_seconds else None
        resp = self.request(
            "GET", self.path(resource, namespace), params=params, stream=True, timeout=read_timeout
        )
        with resp:
            for line in resp.iter_lines():
                if not line:
                    continue
                ev = json.loads(line)
                if ev.get("type") == "ERROR":
                    st = ev.get("object") or {}
                    code = int(st.get("code") or 500)
                    cls = Gone if code == 410 else ApiError
                    raise cls(code, st.get("reason", ""), st.get("message", ""))
                yield WatchEvent(ev["type"], ev["object"])
