"""`subnet.env`: how flanneld tells the CNI plugin (and the next flanneld) the node's subnet.

```
FLANNEL_NETWORK=10.244.0.0/16
FLANNEL_SUBNET=10.244.1.1/24
FLANNEL_MTU=1450
FLANNEL_IPMASQ=false
```

It is written atomically (temporary file in the same directory, fsync, rename; file 0644 in a
0755 directory) so a plugin never reads half a file. It lives in the node's run directory
(`<run>/nodes/<node>/subnet.env`). This module only reads and writes text; it imports nothing
heavy, because the CNI plugin imports it on every ADD.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from netlab.errors import ConfigError

FILENAME = "subnet.env"
REQUIRED = ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ")


@dataclass(frozen=True)
class SubnetEnv:
    networks: tuple[IPv4Network, ...]  # FLANNEL_NETWORK may be a comma-separated list
    subnet: IPv4Interface  # the node subnet's first host, e.g. 10.244.1.1/24
    mtu: int
    ipmasq: bool

    @property
    def node_subnet(self) -> IPv4Network:
        return self.subnet.network

    def render(self) -> str:
        return (
            f"FLANNEL_NETWORK={','.join(str(n) for n in self.networks)}\n"
            f"FLANNEL_SUBNET={self.subnet}\n"
            f"FLANNEL_MTU={self.mtu}\n"
            f"FLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}\n"
        )


def parse(text: str, where: str = FILENAME) -> SubnetEnv:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        values[k.strip()] = v.strip()
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    try:
        networks = tuple(IPv4Network(n.strip()) for n in values["FLANNEL_NETWORK"].split(",") if n.strip())
    except ValueError as e:
        raise ConfigError(f"{where}: FLANNEL_NETWORK: {e}") from None
    try:
        subnet = IPv4Interface(values["FLANNEL_SUBNET"])
    except ValueError as e:
        raise ConfigError(f"{where}: FLANNEL_SUBNET: {e}") from None
    try:
        mtu = int(values["FLANNEL_MTU"])
    except ValueError:
        raise ConfigError(f"{where}: FLANNEL_MTU: {values['FLANNEL_MTU']!r} is not a number") from None
    ipmasq = values["FLANNEL_IPMASQ"].lower()
    if ipmasq not in ("true", "false"):
        raise ConfigError(f"{where}: FLANNEL_IPMASQ: expected true or false, not {ipmasq!r}")
    if not networks:
        raise ConfigError(f"{where}: FLANNEL_NETWORK is empty")
    return SubnetEnv(networks, subnet, mtu, ipmasq == "true")


def read(path: Path) -> SubnetEnv | None:
    """The file's content, or None when it does not exist (yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    return parse(text, str(path))


def write(path: Path, env: SubnetEnv) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(env.render())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
