"""Reading container logs in the CRI format, for `kubectl logs`.

The shim writes one line per chunk of output (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`,
see `netlab/runtime/shim.py`); each container run has its own file,
`<pod log dir>/<container>/<restart count>.log` (the kubelet's `/var/log/pods` layout, under
the node's state directory). Here those lines become what `GET pods/<name>/log` returns:
the text alone, partial lines joined, optionally each message prefixed with its timestamp
(`timestamps=true`), only the last `tailLines` messages, only those since `sinceSeconds`, at
most `limitBytes` bytes; `follow=true` keeps reading as the file grows until the container
stops. Parsing and rendering are pure; `Follower` reads the file as it grows.
"""

from __future__ import annotations

import calendar
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class LogLine:
    timestamp: str
    stream: str
    partial: bool
    text: bytes


@dataclass(frozen=True)
class Message:
    timestamp: str
    stream: str
    text: bytes  # with its newline

    def render(self, timestamps: bool) -> bytes:
        return (self.timestamp.encode() + b" " + self.text) if timestamps else self.text


@dataclass(frozen=True)
class LogOptions:
    timestamps: bool = False
    tail_lines: int | None = None
    since: float | None = None  # seconds since the epoch
    limit_bytes: int | None = None


def parse_line(raw: bytes) -> LogLine | None:
    """One CRI log line (without or with its newline); None when it is not one."""
    raw = raw[:-1] if raw.endswith(b"\n") else raw
    parts = raw.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    text = parts[3] if len(parts) == 4 else b""
    return LogLine(parts[0].decode(), parts[1].decode(), parts[2] == b"P", text)


def timestamp_seconds(ts: str) -> float:
    """`2026-11-30T11:03:16.379346278Z` -> seconds since the epoch."""
    ts = ts.rstrip("Z")
    whole, _, frac = ts.partition(".")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return secs + (float(f"0.{frac}") if frac else 0.0)


class Assembler:
    """Joins partial lines into messages, per stream (stdout and stderr interleave)."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str, bytes]] = {}

    def feed(self, line: LogLine) -> Message | None:
        ts, text = self._pending.pop(line.stream, (line.timestamp, b""))
        text += line.text
        if line.partial:
            self._pending[line.stream] = (ts, text)
            return None
        return Message(ts, line.stream, text + b"\n")


def messages(raw_lines: Iterable[bytes]) -> Iterator[Message]:
    asm = Assembler()
    for raw in raw_lines:
        line = parse_line(raw)
        if line is None:
            continue
        msg = asm.feed(line)
        if msg is not None:
            yield msg


def select(msgs: Iterable[Message], opts: LogOptions) -> list[Message]:
    chosen: Iterable[Message] = msgs
    if opts.since is not None:
        since = opts.since
        chosen = (m for m in chosen if timestamp_seconds(m.timestamp) >= since)
    if opts.tail_lines is not None:
        chosen = deque(chosen, maxlen=max(opts.tail_lines, 0)) if opts.tail_lines > 0 else []
    return list(chosen)


def render(msgs: Iterable[Message], opts: LogOptions) -> bytes:
    data = b"".join(m.render(opts.timestamps) for m in msgs)
    if opts.limit_bytes is not None:
        data = data[: max(opts.limit_bytes, 0)]
    return data


def read(path: Path, opts: LogOptions) -> bytes:
    try:
        with open(path, "rb") as f:
            return render(select(messages(f), opts), opts)
    except FileNotFoundError:
        return b""


class Follower:
    """`follow=true`: the selected log so far, then new messages as they are written.

    Non-blocking, for an event loop: `poll()` returns what is new (b"" when nothing is);
    `done` turns true once the container has stopped (`running()` is false) and everything it
    wrote has been returned, or once `limitBytes` is reached."""

    def __init__(self, path: Path, opts: LogOptions, running: Callable[[], bool]) -> None:
        self.opts = opts
        self.running = running
        self.done = False
        self._sent = 0
        self._asm = Assembler()
        self._rest = b""
        self._first = True
        try:
            self._file: BinaryIO | None = open(path, "rb")  # noqa: SIM115 (closed in close())
        except FileNotFoundError:
            self._file = None
            self.done = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _clip(self, data: bytes) -> bytes:
        if self.opts.limit_bytes is not None:
            data = data[: max(self.opts.limit_bytes - self._sent, 0)]
            if self._sent + len(data) >= self.opts.limit_bytes:
                self.done = True
        self._sent += len(data)
        return data

    def poll(self) -> bytes:
        f = self._file
        if f is None or self.done:
            self.done = True
            return b""
        if self._first:
            self._first = False
            content = f.read()
            complete, _, self._rest = content.rpartition(b"\n")
            lines = complete.split(b"\n") if complete else []
            chosen = select(messages(lines), self.opts)
            return self._clip(b"".join(m.render(self.opts.timestamps) for m in chosen))
        alive = self.running()
        chunk = f.read()
        if not chunk:
            if not alive:
                self.done = True
            return b""
        self._rest += chunk
        *lines, self._rest = self._rest.split(b"\n")
        out = []
        for raw in lines:
            line = parse_line(raw)
            if line is None:
                continue
            msg = self._asm.feed(line)
            if msg is not None and (
                self.opts.since is None or timestamp_seconds(msg.timestamp) >= self.opts.since
            ):
                out.append(msg.render(self.opts.timestamps))
        return self._clip(b"".join(out))
