"""A lab node's agent: flanneld, the kubelet and kube-proxy, supervised as one unit.

`netlab agent --node NODE` runs `make_supervisor(...).run()` in the foreground. `netlab up`
starts one per node as the lab component `agent-<node>`, and a systemd unit or the
Vagrantfile runs the same command, so a node's agent has one code path whoever starts it.

Its children, in order (see `netlab.lab.supervisor` for how they are started, restarted with
back-off and stopped):
1. flanneld, with the lab's etcd, the node's underlay NIC, the node's planned subnet as a hint
   and `--ip-masq` (as kube-flannel.yml runs it). It is ready once it has written a new
   `subnet.env`; the agent then installs flannel's conflist in the node's CNI directory, as
   kube-flannel's install-cni step does. `flanneld=False` skips both: pods then use the
   node's plain bridge network from the lab's plan.
2. the kubelet (`--port 0`: the node advertises where it listens), which registers the node
   with the leased subnet as its pod CIDR;
3. kube-proxy in the agent's proxy mode. `netlab proxy mode` switches a running proxy through
   its mode file; a kube-proxy the agent starts again takes the mode from that file, so a
   crash does not undo a switch (a proxy does not remove other modes' rules when it starts,
   so coming back in the old mode would leave the new mode's rules behind).

A kubelet that dies leaves its pods running, and the one started in its place adopts them; a
flanneld that dies keeps its lease, which the next one takes back by the node's address.
SIGTERM stops kube-proxy, the kubelet and flanneld, in that order (flanneld revokes the
node's lease), and leaves the pods for the next kubelet or for `netlab down`.

Each child logs to `<run>/logs/<child>-<node>.log`, the agent itself to its own output (in the
lab, `<run>/logs/agent-<node>.log`), and the agent's status file is
`<run>/nodes/<node>/agent.json`.

The node's CNI server is not one of the agent's children: it plays the container runtime's
part (containerd runs the CNI plugins and is a unit of its own, outliving kubelet restarts),
`netlab sandbox run` uses it on a lab without any agent, and `netlab down` needs it to run CNI
DEL for the pods left behind once the agents have stopped. So `netlab.lab.build` keeps
starting it with the node's namespace.
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Network
from pathlib import Path

from netlab.lab import cniconf, processes, state
from netlab.lab.state import NODE_UPLINK
from netlab.lab.supervisor import STOP_TIMEOUT, ChildSpec, Supervisor, SupervisorStatus
from netlab.lab.supervisor import read_status as read_supervisor_status
from netlab.layout import Layout

CHILDREN = ("flanneld", "kubelet", "kube-proxy")
# how long stopping an agent may take: each child in turn gets the supervisor's stop timeout
STOP_WAIT = len(CHILDREN) * STOP_TIMEOUT + 5.0
COMPONENT_PREFIX = "agent-"


def component(node: str) -> str:
    """The lab component name of a node's agent."""
    return f"{COMPONENT_PREFIX}{node}"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "netlab.cli", *args]


def agent_argv(node: str, proxy_mode: str) -> list[str]:
    return _cli("agent", "--node", node, "--proxy-mode", proxy_mode)


def flanneld_argv(url: str, node: str, hint: IPv4Network | None) -> list[str]:
    # as kube-flannel.yml: flanneld masquerades what leaves the pod network, so pods on
    # different nodes see each other's own addresses
    argv = _cli("flanneld", "--node", node, "--iface", NODE_UPLINK, "--etcd", url, "--ip-masq")
    if hint is not None:
        argv += ["--subnet-hint", str(hint)]
    return argv


def kubelet_argv(node: str) -> list[str]:
    return _cli("kubelet", "--node", node, "--port", "0")


def kube_proxy_argv(node: str, mode: str) -> list[str]:
    return _cli("kube-proxy", "--node", node, "--mode", mode)


def child_log(layout: Layout, node: str, child: str) -> Path:
    return processes.log_path(layout, f"{child}-{node}")


def status_file(layout: Layout, node: str) -> Path:
    return layout.node_run_dir(node) / "agent.json"


def read_status(layout: Layout, node: str) -> SupervisorStatus | None:
    """What the node's running agent reports; None when no agent runs for it."""
    return read_supervisor_status(status_file(layout, node))


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def make_supervisor(layout: Layout, node: str, proxy_mode: str, flanneld: bool = True) -> Supervisor:
    """The node's agent, ready to `run()`; NotFound when the lab has no such node."""
    from netlab.lab import podnet
    from proxy.daemon import MODE_FILE, control_dir, request_mode
    from proxy.mode import MODES

    lab = state.load(layout)
    spec = lab.node(node)
    children: list[ChildSpec] = []
    if flanneld:
        net = podnet.load(layout)
        if net is not None:
            url = net.etcd_url
        else:
            from netlab.etcd.server import resolve_url

            url = resolve_url(layout, None)
        env_file = podnet.subnet_file(layout, node)
        # flanneld replaces subnet.env (a new inode) whenever it writes it: a file that is not
        # the one already there comes from this agent's flanneld
        stale = _file_id(env_file)

        def leased() -> bool:
            if _file_id(env_file) in (None, stale):
                return False
            cniconf.write_flannel_conflist(layout, node, env_file)
            return True

        argv = flanneld_argv(url, node, spec.pod_cidr)
        children.append(ChildSpec("flanneld", lambda: argv, child_log(layout, node, "flanneld"), leased))
    children.append(ChildSpec("kubelet", lambda: kubelet_argv(node), child_log(layout, node, "kubelet")))

    # the proxy's mode file starts as this agent's mode; a switch rewrites it
    request_mode(layout, node, proxy_mode)
    mode_file = control_dir(layout, node) / MODE_FILE

    def proxy_argv() -> list[str]:
        try:
            mode = mode_file.read_text().strip()
        except OSError:
            mode = proxy_mode
        return kube_proxy_argv(node, mode if mode in MODES else proxy_mode)

    children.append(ChildSpec("kube-proxy", proxy_argv, child_log(layout, node, "kube-proxy")))
    return Supervisor(children, status_file(layout, node))


def describe(layout: Layout, node: str) -> dict[str, str]:
    """For `netlab status`: the agent and each of its children, one short phrase each."""
    st = read_status(layout, node)
    if st is None:
        return {"agent": "not running"}
    out = {"agent": f"pid {st.pid}"}
    for c in st.children:
        if c.pid is not None:
            text = f"pid {c.pid}"
        elif c.restart_at is not None:
            text = "killed, restarting" if (c.last_status or 0) < 0 else f"exited {c.last_status}, restarting"
        else:
            text = "waiting"
        if c.starts > 1:
            text += f" ({c.starts - 1} {'restart' if c.starts == 2 else 'restarts'})"
        out[c.name] = text
    return out


def alive_children(status: SupervisorStatus) -> list[tuple[int, str]]:
    """(pid, start time) of each child the status names that still runs."""
    return [
        (c.pid, c.start)
        for c in status.children
        if c.pid is not None and c.start is not None and processes.is_alive(c.pid, c.start)
    ]
