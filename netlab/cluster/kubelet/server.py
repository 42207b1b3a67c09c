"""The kubelet's HTTPS endpoint: container logs and exec, which the apiserver proxies to.

Paths are the kubelet's own:

- `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `previous`, `timestamps`,
  `tailLines`, `sinceSeconds`, `sinceTime`, `limitBytes` (see `logs`);
- `GET /exec/{namespace}/{pod}/{container}?command=...&stdin&stdout&stderr&tty`, a WebSocket
  speaking the remote-command protocol (see `remotecommand`); the command runs inside the
  container (nsenter into its namespaces), with a pseudo-terminal when `tty=true`;
- `GET /healthz`, `GET /pods` (the pods this kubelet runs, as a PodList) and `GET /metrics`
  (operation timings, see `metrics`).

Like a kubelet started without a config file (`--anonymous-auth=true`,
`--authorization-mode=AlwaysAllow`) it does not authenticate callers. It serves TLS with a
certificate from a CA of its own, generated on first start under the node's state directory
(`netlab.cluster.certs`), which is what kubelets do without a provisioned certificate; the
apiserver does not verify kubelet certificates (kube-apiserver does not either unless given
`--kubelet-certificate-authority`). In the single-host lab the kubelet listens on the host's
loopback, the only address the apiserver (also on the loopback) can reach from outside the
node's namespace; the node advertises it in the `netlab.io/kubelet-url` annotation.

The server runs an asyncio loop on a thread of its own, next to the kubelet's threads.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import fcntl
import logging
import os
import pty
import socket
import ssl
import struct
import termios
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from netlab.cluster.kubelet import logs, remotecommand
from netlab.cluster.kubelet.remotecommand import CLOSE, RESIZE, STDERR, STDIN, STDOUT
from netlab.errors import ConfigError

if TYPE_CHECKING:
    from netlab.cluster.kubelet.kubelet import Kubelet
    from netlab.runtime.containers import Container

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LOG_POLL = 0.1


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain")


def _int(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"invalid {name}: {value!r}\n") from None


def log_options(query: Any) -> logs.LogOptions:
    since: float | None = None
    seconds = _int(query, "sinceSeconds")
    if seconds is not None:
        since = time.time() - seconds
    elif query.get("sinceTime"):
        try:
            since = float(calendar.timegm(time.strptime(query["sinceTime"][:19], "%Y-%m-%dT%H:%M:%S")))
        except ValueError:
            raise web.HTTPBadRequest(text=f"invalid sinceTime: {query['sinceTime']!r}\n") from None
    return logs.LogOptions(
        timestamps=remotecommand.flag(query, "timestamps"),
        tail_lines=_int(query, "tailLines"),
        since=since,
        limit_bytes=_int(query, "limitBytes"),
    )


class KubeletServer:
    def __init__(self, address: str, port: int, cert: Path, key: Path) -> None:
        """Bind now (so the port is known before the node registers); serve after `start()`,
        once `kubelet` is set."""
        self.kubelet: Kubelet
        self.address = address
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl_context.load_cert_chain(str(cert), str(key))
        self.sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((address, port))
        except OSError as e:
            self.sock.close()
            raise ConfigError(f"kubelet cannot listen on {address}:{port}: {e.strerror}") from None
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="kubelet-https", daemon=True)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            with contextlib.suppress(Exception):
                fut.result(5)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/pods", self.pods)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        app.router.add_route("*", "/exec/{namespace}/{pod}/{container}", self.exec)
        return app

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        loop.run_until_complete(runner.setup())
        self._runner = runner
        site = web.SockSite(runner, self.sock, ssl_context=self.ssl_context)
        loop.run_until_complete(site.start())
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    # handlers ------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return _text(200, "ok")

    async def pods(self, request: web.Request) -> web.Response:
        with self.kubelet._lock:
            items = list(self.kubelet.pods.values())
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return web.json_response(body)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.kubelet.runtime.metrics.render(), content_type="text/plain")

    def _pod_container(self, request: web.Request) -> tuple[Obj, str]:
        ns, name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        pod = self.kubelet.find_pod(ns, name)
        if pod is None:
            raise web.HTTPNotFound(text=f'pod "{name}" in namespace "{ns}" not found on this node\n')
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        if container not in names:
            raise web.HTTPNotFound(text=f'container "{container}" not found in pod "{name}"\n')
        return pod, container

    def _running(self, pod: Obj, container: str, attempt: int | None = None) -> Container | None:
        sb = self.kubelet.runtime.sandbox_for(pod)
        if sb is None:
            return None
        runs = [c for c in self.kubelet.runtime.containers(sb) if c.name == container]
        if attempt is not None:
            runs = [c for c in runs if c.attempt == attempt]
        runs.sort(key=lambda c: c.attempt)
        if runs and runs[-1].alive():
            return runs[-1]
        return None

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        pod, container = self._pod_container(request)
        name = pod["metadata"]["name"]
        opts = log_options(request.query)
        directory = self.kubelet.runtime.pod_log_dir(pod) / container
        attempts = (
            sorted(int(p.stem) for p in directory.glob("*.log") if p.stem.isdigit())
            if directory.is_dir()
            else []
        )
        previous = remotecommand.flag(request.query, "previous")
        if previous:
            if len(attempts) < 2:
                return _text(400, f'previous terminated container "{container}" in pod "{name}" not found')
            attempt = attempts[-2]
        else:
            if not attempts:
                return _text(
                    400, f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
                )
            attempt = attempts[-1]
        path = directory / f"{attempt}.log"
        if not remotecommand.flag(request.query, "follow") or previous:
            data = await asyncio.get_running_loop().run_in_executor(None, logs.read, path, opts)
            return web.Response(body=data, content_type="text/plain")
        follower = logs.Follower(path, opts, lambda: self._running(pod, container, attempt) is not None)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while not follower.done:
                data = follower.poll()
                if data:
                    await resp.write(data)
                else:
                    await asyncio.sleep(LOG_POLL)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            follower.close()
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    async def exec(self, request: web.Request) -> web.StreamResponse:
        pod, container = self._pod_container(request)
        command = request.query.getall("command", [])
        if not command:
            return _text(400, "you must specify at least one command for the container")
        c = self._running(pod, container)
        if c is None:
            return _text(400, f'container "{container}" in pod "{pod["metadata"]["name"]}" is not running')
        ws = web.WebSocketResponse(protocols=remotecommand.PROTOCOLS, autoping=True, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            return _text(
                400, "exec needs a WebSocket upgrade (subprotocol v5.channel.k8s.io or v4.channel.k8s.io)"
            )
        await ws.prepare(request)
        q = request.query
        session = ExecSession(
            ws,
            self.kubelet.runtime.exec_argv(c, command),
            self.kubelet.runtime.exec_env(c),
            command,
            stdin=remotecommand.flag(q, "stdin") or remotecommand.flag(q, "input"),
            stdout=remotecommand.flag(q, "stdout", True) or remotecommand.flag(q, "output"),
            stderr=remotecommand.flag(q, "stderr", True) or remotecommand.flag(q, "error"),
            tty=remotecommand.flag(q, "tty"),
        )
        await session.run()
        return ws


class ExecSession:
    """One exec: a process inside the container, its streams relayed over the WebSocket."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        argv: list[str],
        env: dict[str, str],
        command: list[str],
        *,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    ) -> None:
        self.ws = ws
        self.argv = argv
        self.env = env
        self.command = command
        self.stdin, self.stdout, self.stderr, self.tty = stdin, stdout, stderr, tty
        self.v5 = ws.ws_protocol == remotecommand.V5
        self._send_lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self._send_lock:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self.ws.send_bytes(remotecommand.frame(channel, data))

    async def run(self) -> None:
        try:
            if self.tty:
                code = await self._run_tty()
            else:
                code = await self._run_pipes()
            status = remotecommand.exit_status(code, self.command)
        except OSError as e:
            status = remotecommand.failure(f"cannot run {self.command}: {e.strerror or e}")
        async with self._send_lock:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self.ws.send_bytes(remotecommand.status_frame(status))
        await self.ws.close()

    async def _pump(self, reader: asyncio.StreamReader, channel: int | None) -> None:
        """Relay a stream to its channel; a stream the client did not ask for is drained."""
        while data := await reader.read(32768):
            if channel is not None:
                await self.send(channel, data)

    async def _run_pipes(self) -> int:
        proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE if self.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.ensure_future(self._pump(proc.stdout, STDOUT if self.stdout else None)),
            asyncio.ensure_future(self._pump(proc.stderr, STDERR if self.stderr else None)),
        ]
        reader = asyncio.ensure_future(self._read_client(proc, None))
        try:
            await asyncio.gather(*pumps)
            code = await proc.wait()
        finally:
            reader.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()
        return code if code >= 0 else 128 - code

    async def _run_tty(self) -> int:
        master, slave = pty.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(
                "setsid", "--ctty", *self.argv,
                stdin=slave, stdout=slave, stderr=slave, env={"TERM": "xterm", **self.env},
            )  # fmt: skip
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        loop = asyncio.get_running_loop()
        output: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 32768)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
            output.put_nowait(data)

        loop.add_reader(master, readable)
        reader = asyncio.ensure_future(self._read_client(proc, master))
        try:
            while data := await output.get():
                await self.send(STDOUT, data)
            code = await proc.wait()
        finally:
            reader.cancel()
            loop.remove_reader(master)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()
            os.close(master)
        return code if code >= 0 else 128 - code

    async def _read_client(self, proc: asyncio.subprocess.Process, master: int | None) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY:
                continue
            channel, data = remotecommand.split(msg.data)
            if channel == STDIN and self.stdin:
                if master is not None:
                    os.write(master, data)
                elif proc.stdin is not None and not proc.stdin.is_closing():
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                        await proc.stdin.drain()
            elif channel == CLOSE and self.v5 and data[:1] == bytes([STDIN]):
                if master is not None:
                    os.write(master, b"\x04")  # end of input on a terminal
                elif proc.stdin is not None:
                    proc.stdin.close()
            elif channel == RESIZE and master is not None:
                size = remotecommand.terminal_size(data)
                if size:
                    cols, rows = size
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        # the client went away: end the command
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
