"""`netlab apiserver`: the Kubernetes-compatible API server on etcd, in the foreground.

`netlab up` runs it in the background after etcd; this verb is also what a systemd unit or a
test runs. On first start it makes the CA, the serving certificate and the token file; with
`--write-kubeconfig` it writes a kubeconfig (admin token, embedded CA) once it is serving.

The event loop is uvloop's (libuv), a maintained drop-in asyncio loop: every API call, TLS
record and watch line goes through the loop, and with uvloop's transports, TLS and
thread-safe wake-ups the server spends about a tenth less CPU per call and per watch event
than on the standard loop (measured with bench/apiserver.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from pathlib import Path

import click

from netlab.errors import ConfigError
from netlab.layout import Layout


@click.command("apiserver")
@click.option(
    "--etcd",
    "etcd_url",
    default=None,
    metavar="URL",
    help="etcd client URL (default: this lab's etcd, else http://127.0.0.1:2379).",
)
@click.option("--bind-address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=6443, show_default=True, help="HTTPS port.")
@click.option("--service-cidr", default="10.96.0.0/12", show_default=True, help="ClusterIP range.")
@click.option("--node-port-range", default="30000-32767", show_default=True, help="NodePort range.")
@click.option(
    "--cert-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="CA and serving certificate (default: <state dir>/pki).",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Static token CSV token,user,uid[,groups] (default: <state dir>/tokens.csv).",
)
@click.option(
    "--compact-interval",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="Seconds between etcd compactions.",
)
@click.option(
    "--write-kubeconfig",
    type=click.Path(path_type=Path),
    default=None,
    help="Write an admin kubeconfig here once serving.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log requests that fail with a server error, and more.")
def apiserver_cmd(
    etcd_url: str | None,
    bind_address: str,
    port: int,
    service_cidr: str,
    node_port_range: str,
    cert_dir: Path | None,
    token_file: Path | None,
    compact_interval: float,
    write_kubeconfig: Path | None,
    verbose: bool,
) -> None:
    """Serve the Kubernetes API over HTTPS, storing objects in etcd."""
    from netlab.cluster import auth, certs, kubeconfig
    from netlab.cluster.allocators import IPAllocator, PortAllocator
    from netlab.cluster.server import ApiServer, Config, serve, server_ssl_context
    from netlab.etcd import server as etcd_server

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    layout = Layout.from_env()
    try:
        ipaddress.ip_address(bind_address)
    except ValueError:
        raise ConfigError(f"--bind-address {bind_address!r} is not an IP address") from None
    try:
        ips = IPAllocator.parse(service_cidr)
    except ValueError as e:
        raise ConfigError(f"--service-cidr {service_cidr!r}: {e}") from None
    try:
        PortAllocator.parse(node_port_range)
    except ValueError as e:
        raise ConfigError(f"--node-port-range: {e}") from None
    cert_dir = cert_dir or layout.state_dir / "pki"
    token_file = token_file or layout.state_dir / "tokens.csv"
    url = etcd_server.resolve_url(layout, etcd_url)
    auth.ensure_token_file(token_file)
    tokens = auth.load_token_file(token_file)
    hosts = [
        "127.0.0.1",
        "localhost",
        bind_address,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        ips.first,
    ]
    paths = certs.ensure_certs(cert_dir, hosts)
    config = Config(
        etcd_url=url,
        host=bind_address,
        port=port,
        service_cidr=service_cidr,
        node_port_range=node_port_range,
        cert_dir=cert_dir,
        token_file=token_file,
        compact_interval=compact_interval,
    )
    server = ApiServer(config, tokens, server_ssl_context(paths.cert, paths.key))
    shown = "127.0.0.1" if bind_address in ("0.0.0.0", "::") else bind_address
    endpoint = f"https://{shown}:{port}" if ":" not in shown else f"https://[{shown}]:{port}"

    def ready() -> None:
        if write_kubeconfig:
            kubeconfig.write_kubeconfig(
                write_kubeconfig, endpoint, auth.token_for(tokens, "admin"), paths.ca_cert.read_bytes()
            )
        click.echo(f"apiserver: serving on {endpoint} (etcd {url})", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(server, stop, ready)

    import uvloop  # only the server needs it

    try:
        uvloop.run(main())
    except OSError as e:
        raise ConfigError(f"cannot listen on {bind_address}:{port}: {e.strerror or e}") from None


COMMANDS = [apiserver_cmd]
