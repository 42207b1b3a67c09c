"""The WebSocket remote-command protocol that `kubectl exec` speaks (v5 and v4).

kubectl 1.32 opens `GET .../pods/<name>/exec?command=..&stdin=..&stdout=..&stderr=..&tty=..`
as a WebSocket with the subprotocol `v5.channel.k8s.io` (client-go's websocket executor asks
for that one only; `v4.channel.k8s.io` is the same without the close signal). Every message is
binary, its first byte the channel:

| channel | direction | content |
|---|---|---|
| 0 | client -> server | stdin bytes |
| 1, 2 | server -> client | stdout, stderr (with a TTY everything is on 1) |
| 3 | server -> client | once, at the end: a `metav1.Status` (see below) |
| 4 | client -> server | terminal size `{"Width":80,"Height":24}` |
| 255 | client -> server | v5 only: `[255, n]` closes channel n (stdin's end of file) |

The status is `Success`, or `Failure` with reason `NonZeroExitCode` and the exit code as the
cause `ExitCode` (kubectl exits with that code).

After the status the server closes the WebSocket normally (1000); the client treats that as
end of every stream. The kubelet serves this protocol and the apiserver relays it frame by
frame. Pure helpers: parsing query flags, encoding frames, the status objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def flag(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = query.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "t", "yes")


def frame(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + data


def split(message: bytes) -> tuple[int, bytes]:
    if not message:
        return -1, b""
    return message[0], message[1:]


def success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    if code == 0:
        return success()
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            f"command terminated with non-zero exit code: error executing command {command}, exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def failure(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


def status_frame(status: dict[str, Any]) -> bytes:
    return frame(ERROR, json.dumps(status).encode())


def terminal_size(data: bytes) -> tuple[int, int] | None:
    """(columns, rows) from a resize message, None when it is not one."""
    try:
        size = json.loads(data)
        return int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None
