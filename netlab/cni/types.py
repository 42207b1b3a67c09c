"""CNI versions, errors and results, as the spec writes them on the wire.

We speak spec 1.0.0 and 1.1.0 and read the older result shapes (0.3.x/0.4.0 carry an
`ips[].version`; 0.1.0/0.2.0 results are `ip4`/`ip6` objects), because a runtime must accept
whatever an older plugin prints. Everything is parsed leniently in the way libcni does it:
unknown keys are ignored, and a plugin's error object may lack `cniVersion` (Go's
`types.Error` has only `code`, `msg`, `details`) or be pretty-printed.

Standard library only: plugin executables import this on their hot path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import NetlabError

# Versions this code can speak, oldest first. 0.1.0/0.2.0 are only read, never produced.
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = "1.1.0"

# Error codes (SPEC.md "Error" section; 8 and 999 are libcni's).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
INTERNAL = 999


class CniError(NetlabError):
    """An error in CNI terms: a spec code, a message and optional details.

    Plugins raise it and the skeleton prints it as the spec's error JSON; the runtime raises
    it with what the plugin printed, `plugin` naming the plugin that failed.
    """

    def __init__(self, code: int, msg: str, details: str = "", plugin: str | None = None) -> None:
        self.code = code
        self.msg = msg
        self.details = details
        self.plugin = plugin
        super().__init__(self._text())

    def _text(self) -> str:
        text = self.msg
        if self.details:
            text += f" ({self.details})"
        where = f"CNI plugin {self.plugin}" if self.plugin else "CNI"
        return f"{where}: {text} [code {self.code}]"

    def to_dict(self, cni_version: str = LATEST_VERSION) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_plugin_output(cls, plugin: str, stdout: bytes, stderr: bytes, status: int | None) -> CniError:
        """The error a failed plugin reported: JSON on stdout first, stderr as the fallback.

        This follows libcni's `pluginErr` (pkg/invoke/raw_exec.go).
        """
        err = stderr.decode(errors="replace").strip()
        if not stdout.strip():
            if err:
                return cls(INTERNAL, f"plugin failed: {_last_line(err)}", plugin=plugin)
            return cls(INTERNAL, f"plugin failed with no error message (exit status {status})", plugin=plugin)
        try:
            obj = json.loads(stdout)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            code = int(obj.get("code", INTERNAL))
            msg = str(obj.get("msg") or "")
            details = str(obj.get("details") or "")
        except (ValueError, TypeError):
            text = _last_line(stdout.decode(errors="replace"))
            return cls(INTERNAL, f"plugin failed and printed no error object: {text!r}", plugin=plugin)
        return cls(code, msg or f"plugin failed (exit status {status})", details, plugin=plugin)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# Versions -------------------------------------------------------------------------------


def parse_version(version: str) -> tuple[int, int, int]:
    """'1.0.0' -> (1, 0, 0). A malformed version is a decoding failure (code 6)."""
    parts = version.split(".") if isinstance(version, str) else []
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise CniError(DECODING_FAILURE, f"invalid version {version!r}: must be in the form x.y.z")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


def version_ge(a: str, b: str) -> bool:
    return parse_version(a) >= parse_version(b)


def check_version(version: str, supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> str:
    """`version` unchanged when `supported` holds it, else the spec's code 1 error."""
    parse_version(version)
    if version not in supported:
        raise CniError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {json.dumps(list(supported))}',
        )
    return version


def highest_version(candidates: list[str], supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> str | None:
    """The highest of `candidates` that `supported` also holds (how libcni reads `cniVersions`)."""
    usable = [v for v in candidates if v in supported]
    return max(usable, key=parse_version) if usable else None


# Results --------------------------------------------------------------------------------


@dataclass
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None  # 1.1.0
    socket_path: str = ""  # 1.1.0
    pci_id: str = ""  # 1.1.0

    def to_dict(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if version_ge(version, "1.1.0"):
            if self.mtu:
                out["mtu"] = self.mtu
            if self.socket_path:
                out["socketPath"] = self.socket_path
            if self.pci_id:
                out["pciID"] = self.pci_id
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Interface:
        return cls(
            name=str(d.get("name", "")),
            mac=str(d.get("mac") or ""),
            sandbox=str(d.get("sandbox") or ""),
            mtu=int(d["mtu"]) if d.get("mtu") else None,
            socket_path=str(d.get("socketPath") or ""),
            pci_id=str(d.get("pciID") or ""),
        )


@dataclass
class IPConfig:
    address: str  # CIDR: the address with its subnet's prefix length, e.g. 10.244.1.5/24
    gateway: str | None = None
    interface: int | None = None  # index into Result.interfaces

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    def to_dict(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not version_ge(version, "1.0.0"):
            out["version"] = str(self.family)
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = self.address
        if self.gateway:
            out["gateway"] = self.gateway
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IPConfig:
        iface = d.get("interface")
        return cls(
            address=str(d["address"]),
            gateway=str(d["gateway"]) if d.get("gateway") else None,
            interface=int(iface) if iface is not None else None,
        )


@dataclass
class Route:
    dst: str
    gw: str | None = None
    mtu: int | None = None  # 1.1.0 from here on
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None

    def to_dict(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"dst": self.dst}
        if self.gw:
            out["gw"] = self.gw
        if version_ge(version, "1.1.0"):
            for key in ("mtu", "advmss", "priority", "table", "scope"):
                value = getattr(self, key)
                if value is not None:
                    out[key] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Route:
        def opt_int(key: str) -> int | None:
            return int(d[key]) if d.get(key) is not None else None

        return cls(
            dst=str(d["dst"]),
            gw=str(d["gw"]) if d.get("gw") else None,
            mtu=opt_int("mtu"),
            advmss=opt_int("advmss"),
            priority=opt_int("priority"),
            table=opt_int("table"),
            scope=opt_int("scope"),
        )


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DNS:
        d = d or {}
        return cls(
            nameservers=[str(x) for x in d.get("nameservers") or []],
            domain=str(d.get("domain") or ""),
            search=[str(x) for x in d.get("search") or []],
            options=[str(x) for x in d.get("options") or []],
        )


@dataclass
class Result:
    """An ADD result. `to_dict(version)` writes the shape that version prescribes."""

    cni_version: str = LATEST_VERSION
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        version = version or self.cni_version
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.to_dict(version) for i in self.interfaces]
        if self.ips:
            out["ips"] = [ip.to_dict(version) for ip in self.ips]
        if self.routes:
            out["routes"] = [r.to_dict(version) for r in self.routes]
        out["dns"] = self.dns.to_dict()
        return out

    def to_json(self, version: str | None = None) -> str:
        return json.dumps(self.to_dict(version), indent=4)

    @classmethod
    def from_dict(cls, d: Any) -> Result:
        """Any result shape from 0.1.0 to 1.1.0; raises CniError(6) when it is not one."""
        if not isinstance(d, dict):
            raise CniError(DECODING_FAILURE, "result is not a JSON object")
        version = str(d.get("cniVersion") or "0.1.0")
        try:
            if not version_ge(version, "0.3.0"):
                return cls._from_legacy(d, version)
            return cls(
                cni_version=version,
                interfaces=[Interface.from_dict(i) for i in d.get("interfaces") or []],
                ips=[IPConfig.from_dict(ip) for ip in d.get("ips") or []],
                routes=[Route.from_dict(r) for r in d.get("routes") or []],
                dns=DNS.from_dict(d.get("dns")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CniError(DECODING_FAILURE, f"cannot decode result: {e}") from None

    @classmethod
    def _from_legacy(cls, d: dict[str, Any], version: str) -> Result:
        """0.1.0/0.2.0: {"ip4": {"ip", "gateway", "routes"}, "ip6": {...}, "dns"}."""
        res = cls(cni_version=version, dns=DNS.from_dict(d.get("dns")))
        for key in ("ip4", "ip6"):
            block = d.get(key)
            if not block:
                continue
            res.ips.append(IPConfig(address=str(block["ip"]), gateway=block.get("gateway")))
            res.routes.extend(Route.from_dict(r) for r in block.get("routes") or [])
        return res

    @classmethod
    def from_json(cls, data: bytes | str) -> Result:
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise CniError(DECODING_FAILURE, f"cannot decode result: {e}") from None
        return cls.from_dict(obj)


def version_answer(supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> dict[str, Any]:
    """What a plugin prints for VERSION."""
    return {"cniVersion": LATEST_VERSION, "supportedVersions": list(supported)}
