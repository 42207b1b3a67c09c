"""Images without a registry: what program a container's image stands for.

A lab has no image registry and no root filesystems, so an image resolves to a program on the
node (the way `command` would run it inside a real image):

- `netlab/echo` (any tag) is the built-in echo server (`netlab/images/echo.py`): HTTP, TCP and
  UDP on every declared container port, answering with the pod's name, the pod's IP and the
  client address it saw. `args` are passed to it; `command` replaces it, as a command replaces
  an image's entrypoint;
- any other image with a `command` runs that command (plus `args`) from the node's own
  programs: `busybox` with `command: [sleep, "3600"]` runs the node's `sleep`;
- any other image with `args` only runs the args (the images that have no entrypoint, such as
  busybox or alpine, treat their args as the command);
- any other image with neither (`nginx:1.14` in an everyday manifest) runs `netlab/echo` in
  its place, on the container's declared ports (or the port the image is known to listen on),
  and the kubelet says so in an event, so manifests written for a real cluster work unchanged.

Pure: `resolve` only reads the container spec.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netlab.images.echo as _echo

ECHO_IMAGE = "netlab/echo"
ECHO_SCRIPT = Path(_echo.__file__)
ECHO_DEFAULT_PORT = 8080

# where well-known images listen when a manifest does not declare a port
KNOWN_PORTS = {
    "nginx": [80],
    "httpd": [80],
    "caddy": [80],
    "traefik/whoami": [80],
    "hashicorp/http-echo": [5678],
    "kennethreitz/httpbin": [80],
    "redis": [6379],
    "memcached": [11211],
    "postgres": [5432],
    "mysql": [3306],
    "mariadb": [3306],
    "mongo": [27017],
    "rabbitmq": [5672],
    "registry.k8s.io/echoserver": [8080],
    "k8s.gcr.io/echoserver": [8080],
}


@dataclass(frozen=True)
class Program:
    argv: list[str]
    note: str = ""  # how the image was resolved, for the `Pulled` event
    stand_in: bool = False  # an unknown image replaced by netlab/echo


def repository(image: str) -> str:
    """`docker.io/library/nginx:1.14@sha256:..` -> `nginx`; `netlab/echo:v2` -> `netlab/echo`."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    for hub in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "library/"):
        if ref.startswith(hub):
            ref = ref[len(hub) :]
            break
    return ref


def declared_ports(container: dict[str, Any]) -> list[int]:
    ports = []
    for p in container.get("ports") or []:
        port = p.get("containerPort")
        if isinstance(port, int) and 1 <= port <= 65535 and port not in ports:
            ports.append(port)
    return ports


def echo_argv(ports: list[int], extra: list[str] | None = None) -> list[str]:
    argv = [sys.executable, "-I", "-S", str(ECHO_SCRIPT)]
    for p in ports:
        argv += ["--port", str(p)]
    return argv + list(extra or [])


def resolve(container: dict[str, Any]) -> Program:
    image = str(container.get("image") or "")
    command = [str(a) for a in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    repo = repository(image)
    if repo == ECHO_IMAGE and not command:
        ports = declared_ports(container) or [ECHO_DEFAULT_PORT]
        return Program(echo_argv(ports, args), note=f"netlab/echo on port(s) {_ports(ports)}")
    if command:
        return Program(command + args, note=f"the node's {command[0]} (no images in a lab)")
    if args:
        return Program(args, note=f"the node's {args[0]} (no images in a lab)")
    ports = declared_ports(container) or KNOWN_PORTS.get(repo) or [ECHO_DEFAULT_PORT]
    return Program(
        echo_argv(ports),
        note=f"netlab/echo in place of {image or 'an image'} on port(s) {_ports(ports)} (no images in a lab)",
        stand_in=True,
    )


def _ports(ports: list[int]) -> str:
    return ", ".join(str(p) for p in ports)
