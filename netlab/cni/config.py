"""Network configuration lists: loading, validation, and the request each plugin receives.

A runtime reads `*.conflist` files (and, like libcni's `conf.go`, still accepts a legacy
single-plugin `*.conf`/`*.json`, which it wraps into a one-plugin list). Each plugin in the
chain then gets its own request on stdin: its plugin object plus the list's `name`, the
selected `cniVersion`, the `runtimeConfig` for the capabilities it declared, the `prevResult`,
and on GC the `cni.dev/valid-attachments` (SPEC.md section "Deriving execution configuration
from plugin configuration").

Errors here are CNI errors (6 for undecodable input, 7 for an invalid configuration, 1 for a
version nobody here speaks) so the same text reaches a user whether a runtime or a plugin
found the problem.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netlab.cni.types import (
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_NETWORK_CONFIG,
    SUPPORTED_VERSIONS,
    CniError,
    highest_version,
    parse_version,
)

# Names of networks and containers: SPEC.md and libcni's utils.cniReg.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
# Keys only a runtime may write into a plugin's request.
RESERVED_KEYS = ("runtimeConfig", "args", "prevResult")
RESERVED_PREFIX = "cni.dev/"
CONF_EXTENSIONS = (".conflist", ".conf", ".json")


@dataclass(frozen=True)
class NetworkConfigList:
    """One network: an ordered chain of plugin objects.

    `cni_version` is the version this runtime will speak with every plugin of the list: the
    highest of `cniVersion` and `cniVersions` that it supports. `raw` keeps the bytes the
    list came from (the result cache stores them, as libcni does).
    """

    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    cni_versions: tuple[str, ...] = ()
    disable_check: bool = False
    disable_gc: bool = False
    load_only_inlined_plugins: bool = False
    raw: bytes = b""
    source: str = "<config>"


def _err(source: str, msg: str, code: int = INVALID_NETWORK_CONFIG) -> CniError:
    return CniError(code, f"{source}: {msg}")


def _decode(data: bytes | str, source: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise _err(source, f"not valid JSON: {e}", DECODING_FAILURE) from None
    if not isinstance(obj, dict):
        raise _err(source, "must be a JSON object", DECODING_FAILURE)
    return obj


def _check_name(source: str, name: Any) -> str:
    if not name:
        raise _err(source, "missing network name ('name')")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _err(source, f"invalid network name {name!r}: use letters, digits, '_', '.', '-'")
    return name


def _check_plugin(source: str, index: int, plugin: Any) -> dict[str, Any]:
    where = f"plugin {index}"
    if not isinstance(plugin, dict):
        raise _err(source, f"{where} must be a JSON object")
    ptype = plugin.get("type")
    if not ptype:
        raise _err(source, f"{where} has no 'type'")
    if not isinstance(ptype, str) or "/" in ptype or ptype in (".", ".."):
        raise _err(source, f"{where} has an invalid type {ptype!r}")
    caps = plugin.get("capabilities")
    if caps is not None and not isinstance(caps, dict):
        raise _err(source, f"{where} ({ptype}): 'capabilities' must be an object")
    ipam = plugin.get("ipam")
    if ipam is not None and not isinstance(ipam, dict):
        raise _err(source, f"{where} ({ptype}): 'ipam' must be an object")
    return plugin


def _select_version(source: str, obj: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    declared = obj.get("cniVersion")
    versions = obj.get("cniVersions") or []
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise _err(source, "'cniVersions' must be a list of version strings")
    if declared is None and not versions:
        raise _err(source, "missing 'cniVersion'")
    if declared is not None and not isinstance(declared, str):
        raise _err(source, "'cniVersion' must be a string")
    candidates = ([declared] if declared else []) + list(versions)
    for v in candidates:
        try:
            parse_version(v)
        except CniError as e:
            raise _err(source, e.msg, DECODING_FAILURE) from None
    chosen = highest_version(candidates, SUPPORTED_VERSIONS)
    if chosen is None:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"{source}: no supported CNI version in {candidates}",
            f"supported versions are {list(SUPPORTED_VERSIONS)}",
        )
    return chosen, tuple(versions)


def _flag(source: str, obj: dict[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise _err(source, f"'{key}' must be true or false")
    return value


def parse_conflist(data: bytes | str, source: str = "<conflist>") -> NetworkConfigList:
    """A `.conflist` document. Raises CniError (6, 7 or 1) naming what is wrong."""
    raw = data.encode() if isinstance(data, str) else data
    obj = _decode(raw, source)
    if "plugins" not in obj and "type" in obj:
        raise _err(source, "this is a single-plugin config, not a list (no 'plugins'); name it *.conf")
    name = _check_name(source, obj.get("name"))
    version, versions = _select_version(source, obj)
    plugins = obj.get("plugins")
    if not isinstance(plugins, list):
        raise _err(source, "missing 'plugins' (a list of plugin objects)")
    if not plugins:
        raise _err(source, "'plugins' is empty")
    checked = tuple(_check_plugin(source, i, p) for i, p in enumerate(plugins))
    return NetworkConfigList(
        name=name,
        cni_version=version,
        plugins=checked,
        cni_versions=versions,
        disable_check=_flag(source, obj, "disableCheck"),
        disable_gc=_flag(source, obj, "disableGC"),
        load_only_inlined_plugins=_flag(source, obj, "loadOnlyInlinedPlugins"),
        raw=raw,
        source=source,
    )


def parse_conf(data: bytes | str, source: str = "<conf>") -> NetworkConfigList:
    """A legacy single-plugin config, wrapped into a one-plugin list (libcni ConfListFromConf)."""
    raw = data.encode() if isinstance(data, str) else data
    obj = _decode(raw, source)
    if "plugins" in obj:
        return parse_conflist(raw, source)
    name = _check_name(source, obj.get("name"))
    version, _ = _select_version(source, obj)
    plugin = _check_plugin(source, 0, obj)
    wrapped = {"cniVersion": obj.get("cniVersion", version), "name": name, "plugins": [plugin]}
    return NetworkConfigList(
        name=name,
        cni_version=version,
        plugins=(plugin,),
        raw=json.dumps(wrapped).encode(),
        source=source,
    )


def load_conflist(path: str | os.PathLike[str], name: str | None = None) -> NetworkConfigList:
    """Load a network from a file, or from a directory the way a kubelet does.

    A directory is read in lexical file-name order (`*.conflist`, `*.conf`, `*.json`); the
    first file is used, or, with `name`, the first file whose network has that name.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in CONF_EXTENSIONS and f.is_file())
        if not files:
            raise CniError(INVALID_NETWORK_CONFIG, f"no network configuration files in {p}")
        for f in files:
            conf = _load_file(f)
            if name is None or conf.name == name:
                return conf
        raise CniError(INVALID_NETWORK_CONFIG, f"no network named {name!r} in {p}")
    conf = _load_file(p)
    if name is not None and conf.name != name:
        raise CniError(INVALID_NETWORK_CONFIG, f"{p} defines network {conf.name!r}, not {name!r}")
    return conf


def _load_file(p: Path) -> NetworkConfigList:
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise CniError(INVALID_NETWORK_CONFIG, f"{p}: no such file") from None
    except OSError as e:
        raise CniError(INVALID_NETWORK_CONFIG, f"{p}: cannot read: {e.strerror}") from None
    if p.suffix == ".conflist":
        return parse_conflist(data, str(p))
    return parse_conf(data, str(p))


# Per-plugin requests -------------------------------------------------------------------


def plugin_request(
    conf: NetworkConfigList,
    plugin: dict[str, Any],
    prev_result: dict[str, Any] | None = None,
    capability_args: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON object a plugin of `conf` receives on stdin.

    `runtimeConfig` holds only the capabilities the plugin declared true that the runtime
    has values for; `capabilities` itself is removed (SPEC.md). `extra` is merged last (GC's
    `cni.dev/valid-attachments`).
    """
    req = {k: v for k, v in plugin.items() if k != "capabilities"}
    req["cniVersion"] = conf.cni_version
    req["name"] = conf.name
    runtime_config = {
        cap: (capability_args or {})[cap]
        for cap, enabled in (plugin.get("capabilities") or {}).items()
        if enabled is True and cap in (capability_args or {})
    }
    if runtime_config:
        req["runtimeConfig"] = runtime_config
    else:
        req.pop("runtimeConfig", None)
    if prev_result is not None:
        req["prevResult"] = prev_result
    else:
        req.pop("prevResult", None)
    if extra:
        req.update(extra)
    return req
