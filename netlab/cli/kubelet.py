"""`netlab kubelet`: a lab node's kubelet, in the foreground.

`netlab kubelet --node NODE` runs one lab node's kubelet as a host process: it reads the node
from the running lab (underlay address = InternalIP, namespace, CNI configuration), takes the
pod CIDR from the node's flannel `subnet.env` when flanneld has written one (else the lab's
plan), talks to the apiserver of the lab's kubeconfig, and serves its HTTPS endpoint on
`--address`/`--port` (`--port 0`: any free port; the node advertises where). SIGTERM or
SIGINT stop it and leave its pods running, for the next kubelet to adopt.

It runs as one of the children of the node's agent (`netlab agent`, see `netlab.lab.agent`),
which starts it again when it exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from netlab.errors import ConfigError, NetlabError, Unavailable
from netlab.layout import Layout

REGISTER_RETRY = 1.0


@click.command("kubelet")
@click.option("--node", required=True, help="The lab node this kubelet runs.")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig of the apiserver (default: the lab's).",
)
@click.option(
    "--address", default="127.0.0.1", show_default=True, help="Address the HTTPS endpoint listens on."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=10250,
    show_default=True,
    help="HTTPS port (0: any free port).",
)
@click.option("--cpu", default=None, help="CPU capacity to report (default: this host's CPU count).")
@click.option("--memory", default=None, help="Memory capacity to report, e.g. 4Gi (default: this host's).")
@click.option(
    "--pod-cidr", default=None, help="The node's pod CIDR (default: its flannel lease, else the lab's plan)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log each pod sync and more.")
def kubelet_cmd(
    node: str,
    kubeconfig: Path | None,
    address: str,
    port: int,
    cpu: str | None,
    memory: str | None,
    pod_cidr: str | None,
    verbose: bool,
) -> None:
    """Run NODE's pods: sandboxes, CNI, containers, probes, status, logs and exec."""
    from netlab.cluster import certs, quantity
    from netlab.cluster.client import ApiClient
    from netlab.cluster.kubelet.kubelet import Kubelet
    from netlab.cluster.kubelet.node import NodeFacts, host_capacity
    from netlab.cluster.kubelet.runtime import NodeConfig, PodRuntime
    from netlab.cluster.kubelet.server import KubeletServer
    from netlab.lab import pods, state
    from netlab.overlay import subnetenv
    from netlab.runtime.cgroups import CgroupTree

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s kubelet %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    layout = Layout.from_env()
    lab = state.load(layout)
    spec = lab.node(node)
    for value, what in ((cpu, "--cpu"), (memory, "--memory")):
        if value is not None:
            try:
                quantity.parse(value)
            except ValueError as e:
                raise ConfigError(f"{what}: {e}") from None
    if pod_cidr is None:
        lease = subnetenv.read(layout.node_run_dir(node) / subnetenv.FILENAME)
        pod_cidr = str(lease.node_subnet) if lease else str(spec.pod_cidr)
    kubeconfig = kubeconfig or layout.kubeconfig
    if not kubeconfig.exists():
        raise ConfigError(f"no kubeconfig at {kubeconfig}: start the apiserver first (or pass --kubeconfig)")
    client = ApiClient.from_kubeconfig(kubeconfig)
    internal_ip = str(spec.underlay_ip.ip)
    node_cfg = NodeConfig(
        name=node,
        internal_ip=internal_ip,
        netns=layout.node_netns(node),
        pod_cidr=pod_cidr,
        taken=frozenset(lab.topology.node_names),
    )
    runtime = PodRuntime(layout, node_cfg, pods.node_network(layout, node), CgroupTree(layout.prefix))
    paths = certs.ensure_certs(layout.node_state_dir(node) / "pki", [address, "localhost", internal_ip, node])
    server = KubeletServer(address, port, paths.cert, paths.key)
    host_cpu, host_memory, storage = host_capacity(layout.state_dir)
    facts = NodeFacts(
        name=node,
        internal_ip=internal_ip,
        pod_cidr=pod_cidr,
        port=server.port,
        url=server.url if address != internal_ip else None,
        cpu=cpu or host_cpu,
        memory=memory or host_memory,
        storage=storage,
    )
    kubelet = Kubelet(client, runtime, node_cfg, facts)
    server.kubelet = kubelet
    server.start()

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failure: list[BaseException] = []

    def run() -> None:
        while not stop.is_set():
            try:
                kubelet.run()
                return
            except Unavailable as e:  # the apiserver is not up (yet): keep trying, as kubelets do
                logging.getLogger("netlab.kubelet").warning("%s; retrying", e)
                stop.wait(REGISTER_RETRY)
            except BaseException as e:
                failure.append(e)
                stop.set()
                return

    worker = threading.Thread(target=run, name="kubelet", daemon=True)
    worker.start()
    click.echo(f"kubelet: node {node} ({internal_ip}, pods {pod_cidr}), serving on {server.url}", err=True)
    while not stop.wait(1.0):
        pass
    kubelet.stop()
    server.stop()
    client.close()
    if failure:
        problem = failure[0]
        if isinstance(problem, NetlabError):
            raise problem
        raise NetlabError(f"kubelet failed: {type(problem).__name__}: {problem}")


COMMANDS = [kubelet_cmd]
