"""The apiserver process: TLS, authentication, startup, compaction and shutdown around the handlers.

`ApiServer` wires the store (etcd), one watch cache per resource, the registry, the service
allocator and the garbage collector, and serves HTTPS with aiohttp. At start it makes sure the
standard namespaces and the `kubernetes` service exist and re-learns allocated service
addresses from etcd. Every `compact_interval` it compacts etcd to the revision it saw one
interval earlier (kube-apiserver's policy), so watches resuming from older revisions get 410.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from netlab.cluster import auth, resources, status
from netlab.cluster.allocators import IPAllocator, PortAllocator, ServiceAllocator
from netlab.cluster.gc import GarbageCollector
from netlab.cluster.handlers import Handlers, error_response
from netlab.cluster.registry import Registry
from netlab.cluster.status import ApiError
from netlab.cluster.store import Store
from netlab.cluster.watchcache import WatchCache
from netlab.etcd import EtcdClient

log = logging.getLogger(__name__)

EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
STANDARD_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_OPEN_PATHS = ("/healthz", "/livez", "/readyz")


@dataclass
class Config:
    etcd_url: str = "http://127.0.0.1:2379"
    host: str = "127.0.0.1"
    port: int = 6443
    service_cidr: str = "10.96.0.0/12"
    node_port_range: str = "30000-32767"
    cert_dir: Path = Path("/var/lib/netlab/pki")
    token_file: Path = Path("/var/lib/netlab/tokens.csv")
    compact_interval: float = 300.0
    watch_timeout: int = 1800
    bookmark_interval: float = 60.0
    extra_sans: list[str] = field(default_factory=list)


class ApiServer:
    def __init__(
        self, config: Config, tokens: dict[str, auth.User], ssl_context: ssl.SSLContext | None
    ) -> None:
        self.config = config
        self.authenticator = auth.Authenticator(tokens)
        self.ssl_context = ssl_context
        # one etcd call per API write: the kept-alive transport (see netlab.etcd.client)
        self.etcd = EtcdClient(config.etcd_url, keepalive=True)
        self.store = Store(self.etcd)
        self.allocator = ServiceAllocator(
            IPAllocator.parse(config.service_cidr), PortAllocator.parse(config.node_port_range)
        )
        self.registry = Registry(self.store, self.allocator)
        self.caches = {r.plural: WatchCache(r, self.store) for r in resources.RESOURCES}
        self.gc = GarbageCollector(self.registry, self.caches)
        self.registry.cached_object = lambda res, ns, name: self.caches[res.plural].objects.get(
            res.etcd_key(ns, name)
        )
        self.watch_timeout = config.watch_timeout
        self.bookmark_interval = config.bookmark_interval
        self.advertise_address = f"{config.host}:{config.port}"
        self._tasks: list[asyncio.Task[Any]] = []
        self._session: aiohttp.ClientSession | None = None
        self.app = self._make_app()

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        h = Handlers(self)
        app.router.add_get("/version", h.version)
        app.router.add_get("/version/", h.version)
        for p in _OPEN_PATHS:
            app.router.add_get(p, h.health)
        app.router.add_get("/openapi/v3", h.openapi_v3)
        app.router.add_get("/openapi/v3/{tail:.*}", h.openapi_v3)
        app.router.add_route("*", "/api{tail:(/.*)?}", h.api)
        app.router.add_route("*", "/apis{tail:(/.*)?}", h.api)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if request.path not in _OPEN_PATHS:
                user = self.authenticator.authenticate(request.headers.get("Authorization"))
                if user is None:
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                request["user"] = user
            return await handler(request)
        except ApiError as e:
            return error_response(e)
        except web.HTTPException as e:
            if e.status == 404:
                return error_response(
                    ApiError(404, "NotFound", "the server could not find the requested resource")
                )
            if e.status == 405:
                return error_response(status.method_not_allowed())
            if e.status == 413:
                return error_response(ApiError(413, "RequestEntityTooLarge", "the request body is too large"))
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(
                ApiError(
                    500,
                    "InternalError",
                    f"an error on the server has prevented the "
                    f"request from succeeding: {type(e).__name__}: {e}",
                )
            )

    # lifecycle -------------------------------------------------------------------------------

    async def _on_startup(self, app: web.Application) -> None:
        await self.store.call(self.etcd.check)
        for cache in self.caches.values():
            await cache.start()
        for svc in self.caches["services"].objects.values():
            self.allocator.restore(svc)
        await self._ensure_defaults()
        self.gc.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._compactor()))

    async def _on_cleanup(self, app: web.Application) -> None:
        for t in self._tasks:
            t.cancel()
        await self.gc.stop()
        for cache in self.caches.values():
            cache.stop()
        if self._session is not None:
            await self._session.close()
        self.store.close()
        self.etcd.close()

    async def _ensure_defaults(self) -> None:
        for ns in STANDARD_NAMESPACES:
            with contextlib.suppress(ApiError):
                await self.registry.create(resources.NAMESPACES, None, {"metadata": {"name": ns}})
        svc = {
            "metadata": {
                "name": "kubernetes",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": self.allocator.ips.first,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.config.port}],
            },
        }
        existing = await self.store.get_or_none(resources.SERVICES, "default", "kubernetes")
        if existing is None:
            try:
                await self.registry.create(resources.SERVICES, "default", svc)
            except ApiError as e:
                if e.reason != "AlreadyExists":
                    log.warning("cannot create the kubernetes service: %s", e.message)

    async def _compactor(self) -> None:
        """Every interval, compact to the revision seen at the previous tick."""
        previous = 0
        while True:
            await asyncio.sleep(self.config.compact_interval)
            try:
                current = await self.store.revision()
                if previous:
                    await self.store.compact(previous)
                    for cache in self.caches.values():
                        cache.compacted(previous)
                previous = current
            except Exception as e:  # etcd briefly away: try again next tick
                log.warning("compaction failed: %s", e)

    def close_watches(self) -> None:
        """End every open watch stream (at shutdown), so the server can stop at once."""
        for cache in self.caches.values():
            cache.stop()

    # pod logs ----------------------------------------------------------------------------------

    async def pod_logs(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        """Proxy `pods/{name}/log` to the kubelet of the pod's node, as kube-apiserver does.

        The kubelet's base URL is the node's `netlab.io/kubelet-url` annotation when set (lab
        kubelets listen on the host's loopback), else `https://<InternalIP>:<kubelet port>`."""
        pod = await self.registry.get(resources.PODS, ns, name)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise status.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(str(c) for c in containers)}]"
                )
            container = containers[0]
        elif container not in containers:
            raise status.bad_request(f"container {container} is not valid for pod {name}")
        node_name, base = await self._kubelet_url(pod)
        params = {
            k: v
            for k, v in request.query.items()
            if k in ("follow", "tailLines", "timestamps", "previous", "sinceSeconds", "limitBytes")
        }
        url = f"{base.rstrip('/')}/containerLogs/{ns}/{name}/{container}"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            upstream = await self._session.get(
                url, params=params, ssl=False, timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
            )
        except (aiohttp.ClientError, OSError) as e:
            raise ApiError(
                500, "InternalError", f"cannot reach the kubelet of node {node_name} at {base}: {e}"
            ) from None
        async with upstream:
            if upstream.status != 200:
                text = (await upstream.text())[:500]
                raise ApiError(
                    upstream.status if upstream.status in (400, 404) else 500,
                    "NotFound"
                    if upstream.status == 404
                    else "BadRequest"
                    if upstream.status == 400
                    else "InternalError",
                    text.strip() or f"kubelet answered {upstream.status}",
                )
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def _kubelet_url(self, pod: dict[str, Any]) -> tuple[str, str]:
        """The pod's node and the base URL of its kubelet."""
        name = (pod.get("metadata") or {}).get("name")
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise status.bad_request(f"pod {name} does not have a host assigned")
        node = await self.registry.get(resources.NODES, None, node_name)
        base = ((node.get("metadata") or {}).get("annotations") or {}).get("netlab.io/kubelet-url")
        if not base:
            st = node.get("status") or {}
            port = ((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
            ip = next(
                (a.get("address") for a in st.get("addresses") or [] if a.get("type") == "InternalIP"), None
            )
            if not ip:
                raise status.bad_request(f"node {node_name} has no InternalIP to reach its kubelet")
            base = f"https://{ip}:{port}"
        return node_name, base

    # pod exec ----------------------------------------------------------------------------------

    async def pod_exec(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        """Relay `pods/{name}/exec` to the kubelet, WebSocket frame by frame.

        kubectl 1.32 speaks the remote-command protocol over a WebSocket (`v5.channel.k8s.io`)
        and falls back to SPDY only when the upgrade is refused. The kubelet serves the same
        protocol (`netlab.cluster.kubelet.remotecommand`), so the apiserver opens a WebSocket to
        it with the client's subprotocols first, then accepts the client's upgrade with the
        subprotocol the kubelet chose and copies messages both ways until either side closes.
        Errors found before the upgrade (no such pod or container, a completed pod, a container
        that is not running) are ordinary `Status` replies."""
        pod = await self.registry.get(resources.PODS, ns, name)
        spec = pod.get("spec") or {}
        containers = [c.get("name") for c in spec.get("containers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise status.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(str(c) for c in containers)}]"
                )
            container = containers[0]
        elif container not in containers + [c.get("name") for c in spec.get("initContainers") or []]:
            raise status.bad_request(f"container {container} is not valid for pod {name}")
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise status.bad_request(
                f"cannot exec into a container in a completed pod; current phase is {phase}"
            )
        if not request.query.getall("command", []):
            raise status.bad_request("you must specify at least one command for the container")
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        websocket = request.headers.get("Upgrade", "").lower() == "websocket" and bool(offered)
        node_name, base = await self._kubelet_url(pod)
        url = f"{base.rstrip('/')}/exec/{ns}/{name}/{container}"
        params = [
            (k, v) for k, v in request.query.items() if k in ("command", "stdin", "stdout", "stderr", "tty")
        ]
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            upstream = await self._session.ws_connect(
                url,
                params=params,
                protocols=offered or EXEC_PROTOCOLS,
                ssl=False,
                autoping=True,
                max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=10),
            )
        except aiohttp.WSServerHandshakeError as e:
            # the kubelet refused before upgrading; the same request without an upgrade says why
            message = f"kubelet answered {e.status}"
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self._session.get(url, params=params, ssl=False) as why:
                    message = (await why.text()).strip()[:500] or message
            code = e.status if e.status in (400, 404) else 500
            raise ApiError(
                code, {400: "BadRequest", 404: "NotFound"}.get(code, "InternalError"), message
            ) from None
        except (aiohttp.ClientError, OSError) as e:
            raise ApiError(
                500, "InternalError", f"cannot reach the kubelet of node {node_name} at {base}: {e}"
            ) from None
        if not websocket:
            # a SPDY attempt (kubectl's fallback) or a plain request: what the kubelet accepted
            # is fine, but this server only relays WebSockets
            await upstream.close()
            raise status.bad_request(
                "this apiserver relays exec over WebSocket only (subprotocol v5.channel.k8s.io), "
                "which kubectl 1.30 and newer use"
            )
        client = web.WebSocketResponse(
            protocols=[upstream.protocol or offered[0]], autoping=True, max_msg_size=0
        )
        try:
            await client.prepare(request)

            async def to_kubelet() -> None:
                async for msg in client:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        await upstream.send_bytes(msg.data)
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        await upstream.send_str(msg.data)
                await upstream.close()

            async def to_client() -> None:
                async for msg in upstream:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        await client.send_bytes(msg.data)
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        await client.send_str(msg.data)

            up = asyncio.ensure_future(to_kubelet())
            try:
                await to_client()
            finally:
                up.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await up
            await client.close()
        finally:
            await upstream.close()
        return client


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def serve(server: ApiServer, stop: asyncio.Event, ready: Any = None) -> None:
    """Run until `stop` is set; `ready()` is called once the port is listening."""
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(
        runner,
        server.config.host,
        server.config.port,
        ssl_context=server.ssl_context,
        reuse_address=True,
        backlog=1024,
    )
    try:
        await site.start()
        if ready:
            ready()
        await stop.wait()
    finally:
        server.close_watches()
        await runner.cleanup()
