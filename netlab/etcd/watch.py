"""One etcd watch over the JSON gateway, read line by line, stoppable from any thread.

Why this is ours and not etcd3gw's: the gateway streams one JSON object per line, each wrapped
as `{"result": {...}}`, and the lines that matter most for correctness are the ones etcd3gw's
watcher throws away (it keeps only `created` and messages with events, and splits on HTTP chunks
rather than lines). We need three of those: a watch from a compacted revision is answered with
`created`, then `canceled` with `compact_revision`, and the HTTP stream **stays open** after that,
so a client that ignores the cancel hangs forever; a progress notification is a `result` with
only a header, which tells a quiet watcher how far it is up to date; and a server-side cancel
for any other reason must end the watch visibly. We also need the watch to end promptly when
another thread asks (the apiserver stops watches from its event loop), which etcd3gw's thread
and callback design does not give.

The stream is a plain `http.client` connection we own, so `stop()` can shut its socket down: a
read blocked in another thread then returns at once. Outcomes while iterating:

- `Event` (PUT with the new kv, DELETE with key and mod_revision only; `prev_kv` when asked),
  in revision order;
- `Progress(revision)`: nothing happened up to `revision`;
- iteration simply ends after `stop()`;
- `Compacted(compact_revision)` is raised when the start revision was compacted; re-list, then
  watch again from the list's revision + 1;
- `WatchCanceled` when etcd cancelled the watch for another reason;
- `netlab.errors.Unavailable` when the connection is lost (etcd stopped or restarted).

`last_revision` is the newest revision the watcher is known to be up to date with (last event
delivered, or last progress note); resuming from `last_revision + 1` misses nothing.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import socket
import threading
from types import TracebackType
from typing import Any

import orjson

from netlab.errors import Unavailable
from netlab.etcd.errors import Compacted, EtcdError, WatchCanceled
from netlab.etcd.types import Event, Progress, b64, header_revision, to_int


class Watch:
    """An established watch. Iterate for events; `stop()` from any thread ends the iteration."""

    def __init__(
        self,
        host: str,
        port: int,
        key: bytes,
        range_end: bytes | None,
        *,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = f"http://{host}:{port}"
        self.key = key
        self.last_revision = max(start_revision - 1, 0)
        self._pending: collections.deque[Event] = collections.deque()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._reading = False
        self._done = False
        request: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            request["range_end"] = b64(range_end)
        if start_revision:
            request["start_revision"] = str(start_revision)
        if prev_kv:
            request["prev_kv"] = True
        if progress_notify:
            request["progress_notify"] = True
        self._conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            self._conn.request(
                "POST",
                "/v3/watch",
                body=json.dumps({"create_request": request}),
                headers={"Content-Type": "application/json"},
            )
            self._resp = self._conn.getresponse()
            if self._resp.status != 200:
                text = self._resp.read().decode(errors="replace")
                raise EtcdError(f"etcd at {self.url}: watch refused: {_message(text)}")
            first = self._read_line()
        except (OSError, http.client.HTTPException) as e:
            self._conn.close()
            raise Unavailable(f"etcd at {self.url} is unreachable: {_reason(e)}") from None
        except BaseException:
            self._conn.close()
            raise
        if first is None:
            self._conn.close()
            raise Unavailable(f"etcd at {self.url} closed the watch before it was created")
        result = self._result(first)
        if not result.get("created"):
            self._conn.close()
            raise EtcdError(f"etcd at {self.url}: unexpected first watch message {first!r}")
        self.watch_id = to_int(result.get("watch_id"))
        # the revision the watch was created at: a watch without a start revision sees every
        # change after it
        self.created_revision = header_revision(result)
        if not start_revision:
            self.last_revision = self.created_revision
        # after creation a quiet watch may wait for hours: reads block until data or stop()
        if self._conn.sock is not None:
            self._conn.sock.settimeout(None)
        # etcd may cancel straight after `created` (compacted start revision); that is
        # reported by the first next()

    # reading ------------------------------------------------------------------------------

    def _read_line(self) -> dict[str, Any] | None:
        """The next JSON message, or None at end of stream."""
        while True:
            line = self._resp.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                msg = orjson.loads(line)
            except ValueError:
                raise EtcdError(f"etcd at {self.url}: malformed watch message {line[:200]!r}") from None
            return msg if isinstance(msg, dict) else {}

    def _result(self, msg: dict[str, Any]) -> dict[str, Any]:
        if "error" in msg:
            # the gateway reports a broken stream in-band ("grpc: the client connection is
            # closing" when etcd stops, "transport is closing"): requests are checked before
            # the stream starts, so an error here means the watch lost its server
            err = msg["error"]
            text = err.get("message", "") if isinstance(err, dict) else str(err)
            raise Unavailable(f"etcd at {self.url}: watch connection lost: {text}")
        result = msg.get("result")
        return result if isinstance(result, dict) else {}

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> Event | Progress:
        while True:
            if self._pending:
                event = self._pending.popleft()
                self.last_revision = max(self.last_revision, event.kv.mod_revision)
                return event
            with self._lock:
                if self._done or self._stopped.is_set():
                    self._finish()
                    raise StopIteration
                self._reading = True
            try:
                msg = self._read_line()
            except (OSError, http.client.HTTPException) as e:
                if self._stopped.is_set():
                    self._finish()
                    raise StopIteration from None
                self._finish()
                raise Unavailable(f"etcd at {self.url}: watch connection lost: {_reason(e)}") from None
            finally:
                with self._lock:
                    self._reading = False
            if msg is None:
                stopped = self._stopped.is_set()
                self._finish()
                if stopped:
                    raise StopIteration
                raise Unavailable(f"etcd at {self.url}: watch connection closed")
            try:
                item = self._handle(msg)
            except BaseException:
                self._finish()
                raise
            if item is not None:
                return item

    def _handle(self, msg: dict[str, Any]) -> Progress | None:
        result = self._result(msg)
        if result.get("canceled"):
            compact = to_int(result.get("compact_revision"))
            if compact:
                raise Compacted(
                    f"etcd at {self.url}: watch start revision was compacted (oldest is {compact})",
                    compact,
                )
            reason = str(result.get("cancel_reason", ""))
            raise WatchCanceled(
                f"etcd at {self.url} cancelled the watch: {reason or 'no reason given'}", reason
            )
        events = result.get("events")
        if events:
            self._pending.extend(Event.from_json(e) for e in events)
            return None
        if result.get("created"):
            return None
        # a bare header: a progress notification
        revision = header_revision(result)
        self.last_revision = max(self.last_revision, revision)
        return Progress(revision)

    # stopping -----------------------------------------------------------------------------

    def stop(self) -> None:
        """End the watch; safe from any thread. A blocked iteration returns promptly."""
        self._stopped.set()
        with self._lock:
            sock = self._conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if not self._reading:
                self._finish()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _finish(self) -> None:
        self._done = True
        self._pending.clear()
        with contextlib.suppress(Exception):
            self._conn.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _reason(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


def _message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:200]
    return str(body.get("message") or body.get("error") or text)[:200]
