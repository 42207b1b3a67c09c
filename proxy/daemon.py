"""A node's kube-proxy as a long-running component: frontend, proxier, runner, control files.

`KubeProxy.run` is what `netlab kube-proxy` (and `netlab agent`) run. It wires a frontend to
a proxier, runs the sync runner on its own thread, and talks to the rest of netlab through
two files in the node's run directory (`<run>/nodes/<node>/kube-proxy/`):
- `mode`, written by `netlab proxy mode MODE`: when it names another mode, the running proxy
  removes everything the old mode made and syncs the new one (no restart, no lost services);
- `status.json`, written by the proxy at most once per `status_interval` after a sync: the
  mode, the service ports with their endpoints, the last sync's figures and the mode's own
  view (rules or relays), which `netlab proxy show` prints.
Files rather than a socket keep the proxy reachable by any tool, and leave nothing to clean
but a directory the lab already owns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netlab.errors import ConfigError, NetlabError, PrerequisiteError
from netlab.layout import Layout
from proxy.mode import MODES, NodeInfo
from proxy.model import Snapshot
from proxy.modes import check_available, make_mode
from proxy.proxier import Proxier

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
MODE_FILE = "mode"


def control_dir(layout: Layout, node: str) -> Path:
    return layout.node_run_dir(node) / "kube-proxy"


def request_mode(layout: Layout, node: str, mode: str) -> None:
    """Ask the node's running proxy to switch modes (it polls the file)."""
    check_available(mode)
    d = control_dir(layout, node)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{MODE_FILE}.tmp"
    tmp.write_text(mode + "\n")
    os.replace(tmp, d / MODE_FILE)


def read_status(layout: Layout, node: str) -> dict[str, Any] | None:
    try:
        return json.loads((control_dir(layout, node) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def describe_snapshot(snapshot: Snapshot) -> list[dict[str, Any]]:
    out = []
    for spn in sorted(snapshot.services):
        svc = snapshot.services[spn]
        out.append(
            {
                "name": str(spn),
                "protocol": spn.protocol,
                "clusterIP": svc.cluster_ip,
                "port": svc.port,
                "nodePort": svc.node_port,
                "affinity": svc.affinity_timeout is not None,
                "externalTrafficPolicy": "Local" if svc.external_local else "Cluster",
                "endpoints": [
                    {"address": str(e), "node": e.node, "ready": e.ready, "terminating": e.terminating}
                    for e in snapshot.endpoints_of(spn)
                ],
            }
        )
    return out


@dataclass
class ProxyConfig:
    node: str
    netns: str
    mode: str = "iptables"
    services_file: Path | None = None
    node_ips: tuple[str, ...] = ()
    cluster_cidr: str = "10.244.0.0/16"
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    iptables_backend: str | None = None
    control_dir: Path | None = None
    status_interval: float = 0.5
    kubeconfig: Path | None = None

    @property
    def node_info(self) -> NodeInfo:
        return NodeInfo(self.node, self.cluster_cidr, self.node_ips)


class KubeProxy:
    def __init__(self, cfg: ProxyConfig) -> None:
        if cfg.mode not in MODES:
            raise ConfigError(f"unknown proxy mode {cfg.mode!r}: use one of {', '.join(MODES)}")
        self.cfg = cfg
        self.proxier = Proxier(
            make_mode(cfg.mode, cfg.netns, cfg.node_info, cfg.iptables_backend),
            min_sync_period=cfg.min_sync_period,
            sync_period=cfg.sync_period,
        )
        self.stop_event = threading.Event()
        self._frontend: Any = None

    def _make_mode(self, name: str) -> Any:
        return make_mode(name, self.cfg.netns, self.cfg.node_info, self.cfg.iptables_backend)

    def _start_frontend(self) -> threading.Thread:
        if self.cfg.services_file is not None:
            from proxy.frontends.file import FileFrontend

            file_fe = FileFrontend(self.proxier, self.cfg.services_file)
            file_fe.load()  # a bad file at start is an error, not a log line
            self._frontend = file_fe
            return threading.Thread(target=file_fe.run, name="file-frontend", daemon=True)
        from proxy.frontends.apiserver import ApiserverFrontend

        kc = self.cfg.kubeconfig
        if kc is None or not kc.exists():
            raise PrerequisiteError(
                f"no kubeconfig at {kc}: start the control plane first, or give --services-file"
            )
        fe = ApiserverFrontend(self.proxier, kubeconfig=kc)
        self._frontend = fe
        return threading.Thread(target=fe.run, name="apiserver-frontend", daemon=True)

    def _desired_mode(self) -> str | None:
        if self.cfg.control_dir is None:
            return None
        try:
            mode = (self.cfg.control_dir / MODE_FILE).read_text().strip()
        except OSError:
            return None
        return mode or None

    def _write_status(self) -> None:
        if self.cfg.control_dir is None:
            return
        last = self.proxier.last
        try:
            view = self.proxier.show()
        except Exception as e:  # a view is a nicety; never let it stop the proxy
            view = f"(cannot show: {e})"
        status = {
            "node": self.cfg.node,
            "mode": self.proxier.mode.name,
            "pid": os.getpid(),
            "time": time.time(),
            "last_sync": None
            if last is None
            else {"full": last.full, "changed": last.changed, "seconds": round(last.seconds, 6)},
            "services": describe_snapshot(self.proxier.snapshot),
            "view": view,
        }
        d = self.cfg.control_dir
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{STATUS_FILE}.tmp"
        tmp.write_text(json.dumps(status, indent=1))
        os.replace(tmp, d / STATUS_FILE)

    def _switch(self, mode: str) -> None:
        try:
            new = self._make_mode(mode)
        except NetlabError as e:
            log.error("staying in %s mode: %s", self.proxier.mode.name, e)
            if self.cfg.control_dir is not None:  # answer the request: this is the mode
                (self.cfg.control_dir / MODE_FILE).write_text(self.proxier.mode.name + "\n")
            return
        log.info("switching from %s to %s mode", self.proxier.mode.name, mode)
        try:
            self.proxier.switch_mode(new)
        except Exception as e:
            log.error("switch to %s failed: %s (the runner retries a full sync)", mode, e)
            self.proxier.request_sync()

    def run(self) -> None:
        """Serve until `stop()` (or SIGTERM, wired by the caller)."""
        if self.cfg.control_dir is not None:
            self.cfg.control_dir.mkdir(parents=True, exist_ok=True)
            (self.cfg.control_dir / MODE_FILE).write_text(self.cfg.mode + "\n")
        fe_thread = self._start_frontend()
        fe_thread.start()
        runner = threading.Thread(target=self.proxier.runner.run, name="sync-runner", daemon=True)
        runner.start()
        log.info("kube-proxy for %s in %s mode (netns %s)", self.cfg.node, self.cfg.mode, self.cfg.netns)
        written: tuple[int, str] | None = None
        last_write = 0.0
        try:
            while not self.stop_event.wait(0.1):
                desired = self._desired_mode()
                if desired and desired != self.proxier.mode.name:
                    self._switch(desired)
                    last_write = 0.0  # show the new mode at once
                if self.proxier.last is None:
                    continue
                stamp = (id(self.proxier.last), self.proxier.mode.name)
                now = time.monotonic()
                if stamp != written and now - last_write >= self.cfg.status_interval:
                    self._write_status()
                    written, last_write = stamp, now
        finally:
            self.proxier.runner.stop()
            if self._frontend is not None:
                self._frontend.stop()
            runner.join(5)
            with contextlib.suppress(Exception):
                self.proxier.mode.close()

    def stop(self) -> None:
        self.stop_event.set()
