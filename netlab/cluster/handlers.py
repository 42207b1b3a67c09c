"""HTTP for the Kubernetes API: URL routing, query parameters, bodies, and response shapes.

Everything below `/api` and `/apis` goes through one handler that parses the path into
(group, version, namespace, resource, name, subresource), picks the verb from the method and
query (`watch=true` turns a list into a watch), and calls the registry. Request bodies are
JSON, YAML or Kubernetes protobuf (decoded to JSON by `k8sproto`); responses are JSON (even
when a client asks for protobuf: kubectl and client-go accept that), `as=Table` requests
get server-side tables, and every error is a `Status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from netlab.cluster import codec, discovery, k8sproto, openapi, protowire, resources, status, tables
from netlab.cluster.registry import now
from netlab.cluster.resources import Resource
from netlab.cluster.selectors import parse_field_selector, parse_label_selector
from netlab.cluster.status import ApiError
from netlab.cluster.store import parse_rv
from netlab.cluster.watchcache import Change, match_all

if TYPE_CHECKING:
    from netlab.cluster.server import ApiServer

Obj = dict[str, Any]
JSON_TYPE = "application/json"
_TRUE = ("true", "1", "True")


def dumps(obj: Any) -> bytes:
    return codec.dumps(obj)


def json_response(obj: Any, code: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=code, content_type=JSON_TYPE)


def error_response(e: ApiError) -> web.Response:
    resp = json_response(e.status(), e.code)
    if e.retry_after:
        resp.headers["Retry-After"] = str(e.retry_after)
    return resp


@dataclass
class Target:
    group: str
    version: str
    res: Resource | None = None
    namespace: str | None = None
    name: str | None = None
    sub: str | None = None
    bindings: bool = False  # the legacy POST /api/v1/namespaces/{ns}/bindings


def parse_path(path: str) -> Target | None:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) < 2:
            return None
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) < 3:
            return None
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    t = Target(group, version)
    if not rest:
        return t
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns_res = resources.lookup(group, version, rest[2])
        if ns_res is not None and ns_res.namespaced:
            t.namespace, t.res = rest[1], ns_res
            rest = rest[3:]
            if len(rest) > 2:
                raise status.not_found("path", path)
            t.name = rest[0] if rest else None
            t.sub = rest[1] if len(rest) > 1 else None
            return t
        if rest[2] == "bindings" and not group and len(rest) == 3:
            t.namespace, t.bindings = rest[1], True
            return t
    res = resources.lookup(group, version, rest[0])
    if res is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    t.res = res
    if len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    t.name = rest[1] if len(rest) > 1 else None
    t.sub = rest[2] if len(rest) > 2 else None
    if res.namespaced and t.name is not None:
        # a namespaced object needs its namespace in the path
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return t


async def read_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise status.bad_request("the request body is empty")
    ctype = request.content_type
    if "protobuf" in ctype:
        return _protobuf_body(raw)
    if "cbor" in ctype:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format ({ctype}): this apiserver accepts "
            "JSON, YAML and protobuf bodies",
        )
    try:
        if "yaml" in ctype:
            return yaml.safe_load(raw)
        return codec.loads(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise status.bad_request(
            f"the request body is not valid {'YAML' if 'yaml' in ctype else 'JSON'}: {str(e).splitlines()[0]}"
        ) from None


def _protobuf_body(raw: bytes) -> Any:
    """kubectl's typed generators (`kubectl create deployment ...`) send protobuf."""
    try:
        return k8sproto.decode_body(raw)
    except k8sproto.Unsupported as e:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"{e}: send the object as JSON or YAML instead (`kubectl create -f FILE` or "
            "`kubectl apply -f FILE`)",
        ) from None
    except protowire.DecodeError as e:
        raise status.bad_request(f"the request body is not valid Kubernetes protobuf: {e}") from None


def delete_options(request: web.Request, body: Any) -> Obj:
    opts: Obj = dict(body) if isinstance(body, dict) else {}
    q = request.query
    if "gracePeriodSeconds" in q:
        try:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        except ValueError:
            raise status.bad_request(f"invalid gracePeriodSeconds: {q['gracePeriodSeconds']!r}") from None
    if "propagationPolicy" in q:
        opts["propagationPolicy"] = q["propagationPolicy"]
    if "orphanDependents" in q:
        opts["orphanDependents"] = q["orphanDependents"] in _TRUE
    if "preconditions.uid" in q or "preconditions.resourceVersion" in q:
        pre = opts.setdefault("preconditions", {})
        for k in ("uid", "resourceVersion"):
            if f"preconditions.{k}" in q:
                pre[k] = q[f"preconditions.{k}"]
    gps = opts.get("gracePeriodSeconds")
    if gps is not None and (isinstance(gps, bool) or not isinstance(gps, int)):
        raise status.bad_request("gracePeriodSeconds must be an integer")
    return opts


def _int_param(request: web.Request, name: str) -> int:
    text = request.query.get(name, "")
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise status.bad_request(f"invalid {name}: {text!r}") from None
    if value < 0:
        raise status.bad_request(f"invalid {name}: {text!r}")
    return value


class Handlers:
    def __init__(self, server: ApiServer) -> None:
        self.server = server

    @property
    def registry(self) -> Any:
        return self.server.registry

    # discovery and friends ---------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return json_response(discovery.VERSION)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type="text/plain")

    async def openapi_v3(self, request: web.Request) -> web.Response:
        tail = request.match_info.get("tail", "")
        if not tail:
            return json_response(openapi.root())
        doc = openapi.document_for_path(tail)
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return json_response(doc)

    async def api(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path == "/api":
            return json_response(discovery.api_versions(self.server.advertise_address))
        if path == "/apis":
            return json_response(discovery.api_group_list())
        target = parse_path(path)
        if target is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if target.res is None and not target.bindings:
            if request.method != "GET":
                raise status.method_not_allowed()
            if path.startswith("/apis/") and path.count("/") == 2:
                grp = discovery.api_group(target.group)
                if grp is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return json_response(grp)
            doc = discovery.resource_list(target.group, target.version)
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return json_response(doc)
        user = request["user"]
        verb = self._verb(request, target)
        if not user.may(verb):
            what = target.res.qualified if target.res else "bindings"
            raise status.forbidden(
                f'User "{user.name}" cannot {verb} resource "{what}" in API group '
                f'"{target.group}"'
                + (f' in the namespace "{target.namespace}"' if target.namespace else "")
                + ": read-only token",
                what,
                target.name or "",
            )
        return await self._dispatch(request, target, verb)

    def _verb(self, request: web.Request, t: Target) -> str:
        m = request.method
        if t.bindings:
            return "create"
        if t.name is None:
            if m == "GET":
                return "watch" if request.query.get("watch") in _TRUE else "list"
            return {"POST": "create", "DELETE": "deletecollection"}.get(m, "unknown")
        if t.sub in ("binding", "exec"):
            return "create"  # exec runs commands in a pod: never a read-only user's
        return {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}.get(
            m, "unknown"
        )

    async def _dispatch(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        dry_run = bool(request.query.getall("dryRun", []))
        if t.bindings:
            if request.method != "POST":
                raise status.method_not_allowed()
            body = await read_body(request)
            name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
            if not name:
                raise status.bad_request("a Binding needs metadata.name (the pod)")
            await self.registry.bind(t.namespace, name, body, dry_run=dry_run)
            return json_response(status.success(code=201), 201)
        res = t.res
        assert res is not None
        if res.namespaced and t.namespace is not None and verb != "create":
            pass
        if t.sub is not None and t.sub not in res.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if verb == "list":
            return await self._list(request, res, t.namespace)
        if verb == "watch":
            return await self._watch(request, res, t.namespace)
        if verb == "create" and t.name is None:
            body = await read_body(request)
            obj = await self.registry.create(res, t.namespace, body, dry_run=dry_run)
            return json_response(obj, 201)
        if verb == "deletecollection":
            body = await self._optional_body(request)
            keep = self._keep(request, res)
            objs = await self.registry.delete_collection(
                res, t.namespace, keep, delete_options(request, body), dry_run=dry_run
            )
            return json_response(
                {"kind": res.list_kind_name(), "apiVersion": res.api_version, "metadata": {}, "items": objs}
            )
        assert t.name is not None
        if t.sub == "binding":
            if request.method != "POST":
                raise status.method_not_allowed()
            body = await read_body(request)
            await self.registry.bind(t.namespace, t.name, body, dry_run=dry_run)
            return json_response(status.success(code=201), 201)
        if t.sub == "log":
            if request.method != "GET":
                raise status.method_not_allowed()
            return await self.server.pod_logs(request, t.namespace or "", t.name)
        if t.sub == "exec":
            return await self.server.pod_exec(request, t.namespace or "", t.name)
        if t.sub == "scale":
            return await self._scale(request, res, t.namespace or "", t.name, dry_run)
        if request.method == "GET":
            obj = await self.registry.get(res, t.namespace, t.name)
            return self._object_or_table(request, res, obj)
        if request.method == "PUT":
            body = await read_body(request)
            obj = await self.registry.update(
                res, t.namespace, t.name, body, subresource=t.sub, dry_run=dry_run
            )
            return json_response(obj)
        if request.method == "PATCH":
            body = await read_body(request)
            obj, code = await self.registry.patch(
                res,
                t.namespace,
                t.name,
                request.headers.get("Content-Type", ""),
                body,
                subresource=t.sub,
                dry_run=dry_run,
                field_manager=request.query.get("fieldManager", ""),
            )
            return json_response(obj, code)
        if request.method == "DELETE" and t.sub is None:
            body = await self._optional_body(request)
            obj = await self.registry.delete(
                res, t.namespace, t.name, delete_options(request, body), dry_run=dry_run
            )
            return json_response(obj)
        raise status.method_not_allowed()

    async def _optional_body(self, request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        raw = await request.read()
        if not raw.strip():
            return None
        try:
            return codec.loads(raw)
        except ValueError:
            raise status.bad_request("the request body is not valid JSON") from None

    def _keep(self, request: web.Request, res: Resource) -> Any:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"), res.plural)
        if labels.empty and not fields.requirements:
            return match_all  # watches know it and skip matching

        def keep(obj: Obj) -> bool:
            return labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj)

        return keep

    def _object_or_table(self, request: web.Request, res: Resource, obj: Obj) -> web.Response:
        if tables.wants_table(request.headers.get("Accept", "")):
            rv = obj["metadata"].get("resourceVersion", "")
            return json_response(
                tables.render_table(
                    res.plural,
                    [obj],
                    rv,
                    now(),
                    include_object=request.query.get("includeObject", "Metadata"),
                )
            )
        return json_response(obj)

    async def _list(self, request: web.Request, res: Resource, ns: str | None) -> web.Response:
        keep = self._keep(request, res)
        page = await self.registry.list_page(
            res,
            ns,
            keep,
            limit=_int_param(request, "limit"),
            continue_token=request.query.get("continue", ""),
            resource_version=request.query.get("resourceVersion", ""),
            rv_match=request.query.get("resourceVersionMatch", ""),
        )
        rv = str(page.revision)
        if tables.wants_table(request.headers.get("Accept", "")):
            return json_response(
                tables.render_table(
                    res.plural,
                    page.items,
                    rv,
                    now(),
                    include_object=request.query.get("includeObject", "Metadata"),
                    continue_token=page.continue_token,
                )
            )
        meta: Obj = {"resourceVersion": rv}
        if page.continue_token:
            meta["continue"] = page.continue_token
        return json_response(
            {
                "kind": res.list_kind_name(),
                "apiVersion": res.api_version,
                "metadata": meta,
                "items": page.items,
            }
        )

    async def _watch(self, request: web.Request, res: Resource, ns: str | None) -> web.StreamResponse:
        keep = self._keep(request, res)
        rv_text = request.query.get("resourceVersion", "")
        since = None if rv_text in ("", "0") else parse_rv(rv_text)
        timeout = _int_param(request, "timeoutSeconds") or self.server.watch_timeout
        bookmarks = request.query.get("allowWatchBookmarks") in _TRUE
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        include = request.query.get("includeObject", "Metadata")
        cache = self.server.caches[res.plural]
        await cache.ready.wait()
        sub = cache.subscribe(res.prefix(ns), keep, since)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json;stream=watch"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if sub is None:
            await resp.write(dumps({"type": "ERROR", "object": status.gone().status()}) + b"\n")
            return resp
        first = True

        def encode(kind: str, obj: Obj) -> bytes:
            nonlocal first
            if as_table and kind != "BOOKMARK" and kind != "ERROR":
                rv = obj["metadata"].get("resourceVersion", "")
                obj = tables.render_table(
                    res.plural, [obj], rv, now(), include_object=include, with_columns=first
                )
                first = False
            return dumps({"type": kind, "object": obj}) + b"\n"

        def line(ch: Change) -> bytes:
            if as_table:
                return encode(ch.type, ch.obj)
            if ch.line is None:
                ch.line = encode(ch.type, ch.obj)
            return ch.line

        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = min(left, self.server.bookmark_interval) if bookmarks else left
                try:
                    ch = await asyncio.wait_for(sub.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and deadline - time.monotonic() > 0:
                        mark = {
                            "kind": res.kind,
                            "apiVersion": res.api_version,
                            "metadata": {"resourceVersion": str(cache.revision)},
                        }
                        await resp.write(encode("BOOKMARK", mark))
                    continue
                if ch is None:
                    if not cache.stopping:  # shutting down: just end the stream
                        await resp.write(dumps({"type": "ERROR", "object": status.gone().status()}) + b"\n")
                    break
                chunk = [line(ch)]
                while not sub.queue.empty() and len(chunk) < 256:
                    nxt = sub.queue.get_nowait()
                    if nxt is None:
                        chunk.append(dumps({"type": "ERROR", "object": status.gone().status()}) + b"\n")
                        break
                    chunk.append(line(nxt))
                await resp.write(b"".join(chunk))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            cache.unsubscribe(sub)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    async def _scale(
        self, request: web.Request, res: Resource, ns: str, name: str, dry_run: bool
    ) -> web.Response:
        if request.method == "GET":
            return json_response(self.registry.scale_of(await self.registry.get(res, ns, name)))
        if request.method == "PUT":
            body = await read_body(request)
            return json_response(await self.registry.update_scale(res, ns, name, body, dry_run=dry_run))
        if request.method == "PATCH":
            body = await read_body(request)
            ctype = request.headers.get("Content-Type", "")
            return json_response(
                await self.registry.update_scale(res, ns, name, body, content_type=ctype, dry_run=dry_run)
            )
        raise status.method_not_allowed()
