"""netlab-flannel: flannel's CNI meta plugin (flannel-io/cni-plugin), delegating to netlab-bridge.

It owns no kernel object: it turns the node's `subnet.env` (written by flanneld) into a
bridge + host-local configuration and runs that delegate.

ADD:
1. read `subnetFile` (default `/run/flannel/subnet.env`); NETWORK, SUBNET, MTU and IPMASQ are
   all required. A missing file is the boot race (flanneld has not leased the node's subnet
   yet): code 11, "try again later", so the runtime retries, where upstream answers a generic
   error;
2. the `delegate` object may not set `name` or `ipam`, and its `type` must be a string;
3. keys the delegate leaves out are filled in: `name` (the network's), `type`
   (`netlab-bridge`; upstream `bridge`), `ipMasq` (NOT `FLANNEL_IPMASQ`: flanneld masquerades
   itself when that is true), `mtu` (`FLANNEL_MTU`), `isGateway` (true, for bridge types),
   `cniVersion`, and `runtimeConfig` when the runtime passed one;
4. `ipam` is the conf's own `ipam` object (type `netlab-host-local` unless given) with
   `ranges` = the node subnet and `routes` = its own routes plus one per `FLANNEL_NETWORK`;
5. the delegate configuration is saved to `<dataDir>/<containerID>` (directory 0700, file
   0600, fsync'd) *before* the delegate's ADD, so a DEL can always undo what an ADD began;
   the delegate's result is the plugin's result. A failed ADD removes the saved file.

DEL reads the saved configuration (missing: nothing to do, success), runs the delegate's DEL
with it (plus the runtime's `prevResult`, which upstream drops, so the bridge can find the
host veth of a pod whose namespace is gone), and removes the file only when that succeeded.
CHECK runs the delegate's CHECK on the saved configuration with `prevResult` (upstream does
nothing). GC (CNI 1.1) removes saved files of containers that are not valid attachments and
forwards to the delegate; STATUS is code 50 until `subnet.env` exists.

`render_delegate` is pure and golden-tested; the rest is file handling and the delegate call.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cni.plugins import delegates
from cni.plugins.host_local import valid_attachments
from netlab.cni.skel import CmdArgs
from netlab.cni.types import (
    DECODING_FAILURE,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    PLUGIN_NOT_AVAILABLE,
    SUPPORTED_VERSIONS,
    TRY_AGAIN_LATER,
    CniError,
    Result,
)
from netlab.errors import ConfigError
from netlab.overlay import subnetenv

DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/flannel"
DEFAULT_DELEGATE = "netlab-bridge"
DEFAULT_IPAM = "netlab-host-local"
BRIDGE_TYPES = ("bridge", "netlab-bridge")


@dataclass(frozen=True)
class FlannelConf:
    name: str
    cni_version: str
    subnet_file: Path
    data_dir: Path
    delegate: dict[str, Any]
    ipam: dict[str, Any] | None
    runtime_config: dict[str, Any] | None


def parse_flannel_conf(config: dict[str, Any]) -> FlannelConf:
    def path(key: str, default: str) -> Path:
        v = config.get(key, default)
        if not isinstance(v, str) or not v:
            raise CniError(INVALID_NETWORK_CONFIG, f"{key} must be a non-empty path")
        return Path(v)

    delegate = config.get("delegate")
    if delegate is None:
        delegate = {}
    if not isinstance(delegate, dict):
        raise CniError(INVALID_NETWORK_CONFIG, "delegate must be an object")
    for key in ("name", "ipam"):
        if key in delegate:
            raise CniError(INVALID_NETWORK_CONFIG, f"delegate must not set '{key}'")
    if "type" in delegate and not isinstance(delegate["type"], str):
        raise CniError(INVALID_NETWORK_CONFIG, "delegate's 'type' must be a string")
    ipam = config.get("ipam")
    if ipam is not None and not isinstance(ipam, dict):
        raise CniError(INVALID_NETWORK_CONFIG, "ipam must be an object")
    runtime = config.get("runtimeConfig")
    return FlannelConf(
        name=str(config.get("name", "")),
        cni_version=str(config.get("cniVersion", "")),
        subnet_file=path("subnetFile", DEFAULT_SUBNET_FILE),
        data_dir=path("dataDir", DEFAULT_DATA_DIR),
        delegate=dict(delegate),
        ipam=dict(ipam) if ipam is not None else None,
        runtime_config=runtime if isinstance(runtime, dict) else None,
    )


def render_delegate(conf: FlannelConf, env: subnetenv.SubnetEnv) -> dict[str, Any]:
    """The delegate's network configuration for this node (pure)."""
    d = dict(conf.delegate)
    d.setdefault("name", conf.name)
    d.setdefault("type", DEFAULT_DELEGATE)
    d.setdefault("ipMasq", not env.ipmasq)
    d.setdefault("mtu", env.mtu)
    if d["type"] in BRIDGE_TYPES:
        d.setdefault("isGateway", True)
    if conf.cni_version:
        d["cniVersion"] = conf.cni_version
    if conf.runtime_config is not None:
        d["runtimeConfig"] = conf.runtime_config
    ipam = dict(conf.ipam or {})
    ipam.setdefault("type", DEFAULT_IPAM)
    ipam["ranges"] = [[{"subnet": str(env.node_subnet)}]]
    routes = list(ipam.get("routes") or [])
    routes += [{"dst": str(n)} for n in env.networks]
    ipam["routes"] = routes
    d["ipam"] = ipam
    return d


def _read_env(conf: FlannelConf) -> subnetenv.SubnetEnv:
    try:
        env = subnetenv.read(conf.subnet_file)
    except ConfigError as e:
        raise CniError(DECODING_FAILURE, str(e)) from None
    if env is None:
        raise CniError(
            TRY_AGAIN_LATER,
            f"{conf.subnet_file} does not exist yet: flanneld has not leased this node's subnet",
        )
    return env


def _saved_path(conf: FlannelConf, container_id: str) -> Path:
    return conf.data_dir / container_id


def save_delegate(conf: FlannelConf, container_id: str, data: bytes) -> None:
    conf.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=conf.data_dir, prefix=f".{container_id}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, _saved_path(conf, container_id))
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise CniError(IO_FAILURE, f"cannot save the delegate configuration: {e.strerror}") from None


def _load_saved(conf: FlannelConf, container_id: str) -> dict[str, Any] | None:
    try:
        data = _saved_path(conf, container_id).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CniError(IO_FAILURE, f"cannot read the saved delegate configuration: {e.strerror}") from None
    try:
        saved = json.loads(data)
    except ValueError:
        raise CniError(DECODING_FAILURE, f"{_saved_path(conf, container_id)} is not JSON") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("type"), str):
        raise CniError(DECODING_FAILURE, f"{_saved_path(conf, container_id)} is not a delegate configuration")
    return saved


class FlannelPlugin:
    name = "flannel"
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def add(self, a: CmdArgs) -> Result:
        conf = parse_flannel_conf(a.config)
        delegate = render_delegate(conf, _read_env(conf))
        data = json.dumps(delegate).encode()
        save_delegate(conf, a.container_id, data)
        try:
            return delegates(a.env, self.netns).add(delegate["type"], data)
        except BaseException:
            _saved_path(conf, a.container_id).unlink(missing_ok=True)
            raise

    def _with_prev(self, a: CmdArgs, saved: dict[str, Any]) -> bytes:
        if "prevResult" in a.config:
            saved = {**saved, "prevResult": a.config["prevResult"]}
        return json.dumps(saved).encode()

    def delete(self, a: CmdArgs) -> None:
        conf = parse_flannel_conf(a.config)
        saved = _load_saved(conf, a.container_id)
        if saved is None:
            return  # never added, or already deleted
        delegates(a.env, self.netns).delete(saved["type"], self._with_prev(a, saved))
        _saved_path(conf, a.container_id).unlink(missing_ok=True)

    def check(self, a: CmdArgs) -> None:
        conf = parse_flannel_conf(a.config)
        saved = _load_saved(conf, a.container_id)
        if saved is None:
            raise CniError(INVALID_NETWORK_CONFIG, f"no saved delegate configuration for {a.container_id}")
        delegates(a.env, self.netns).check(saved["type"], self._with_prev(a, saved))

    def gc(self, a: CmdArgs) -> None:
        conf = parse_flannel_conf(a.config)
        valid = {cid for cid, _ in valid_attachments(a)}
        try:
            stale = [p for p in conf.data_dir.iterdir() if not p.name.startswith(".") and p.name not in valid]
        except FileNotFoundError:
            stale = []
        for p in stale:
            p.unlink(missing_ok=True)
        env = subnetenv.read(conf.subnet_file) if conf.subnet_file.exists() else None
        if env is not None:
            delegate = render_delegate(conf, env)
            delegate["cni.dev/valid-attachments"] = a.config.get("cni.dev/valid-attachments") or []
            delegates(a.env, self.netns).gc(delegate["type"], json.dumps(delegate).encode())

    def status(self, a: CmdArgs) -> None:
        conf = parse_flannel_conf(a.config)
        if not conf.subnet_file.exists():
            raise CniError(
                PLUGIN_NOT_AVAILABLE, f"{conf.subnet_file} does not exist yet: flanneld is not ready"
            )
