"""Where one lab keeps its names and files.

A lab is identified by its name prefix (`nl-` by default) and two directories: persistent
state (`/var/lib/netlab`: etcd data, IPAM, the CNI result cache, the kubeconfig) and runtime
state (`/run/netlab`: sockets, pid files, per-node `subnet.env`). All three can be moved with
`NETLAB_PREFIX`, `NETLAB_STATE_DIR` and `NETLAB_RUN_DIR`, which is how the test suite runs
many small labs side by side without touching the default one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from netlab import names

DEFAULT_STATE_DIR = Path("/var/lib/netlab")
DEFAULT_RUN_DIR = Path("/run/netlab")


@dataclass(frozen=True)
class Layout:
    prefix: str = names.ROOT_PREFIX
    state_dir: Path = DEFAULT_STATE_DIR
    run_dir: Path = DEFAULT_RUN_DIR

    def __post_init__(self) -> None:
        names.check_prefix(self.prefix)

    @classmethod
    def from_env(cls) -> Layout:
        return cls(
            prefix=os.environ.get("NETLAB_PREFIX", names.ROOT_PREFIX),
            state_dir=Path(os.environ.get("NETLAB_STATE_DIR", DEFAULT_STATE_DIR)),
            run_dir=Path(os.environ.get("NETLAB_RUN_DIR", DEFAULT_RUN_DIR)),
        )

    def env(self) -> dict[str, str]:
        """The variables that make a child process see this same layout."""
        return {
            "NETLAB_PREFIX": self.prefix,
            "NETLAB_STATE_DIR": str(self.state_dir),
            "NETLAB_RUN_DIR": str(self.run_dir),
        }

    # Namespaces -------------------------------------------------------------------------

    def node_netns(self, node: str) -> str:
        return f"{self.prefix}{node}"

    @property
    def underlay_netns(self) -> str:
        return f"{self.prefix}underlay"

    @property
    def client_netns(self) -> str:
        return f"{self.prefix}client"

    def pod_netns(self, sandbox: str) -> str:
        return f"{self.prefix}pod-{sandbox}"

    # Files ------------------------------------------------------------------------------

    @property
    def lab_file(self) -> Path:
        """The running lab's description, written by `up`, read by every other verb."""
        return self.run_dir / "lab.json"

    def node_run_dir(self, node: str) -> Path:
        return self.run_dir / "nodes" / node

    def node_state_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    def cni_conf_dir(self, node: str) -> Path:
        return self.node_state_dir(node) / "net.d"

    @property
    def cni_bin_dir(self) -> Path:
        """Where `netlab up` links the netlab plugins for runtimes that want one folder."""
        return self.state_dir / "cni" / "bin"

    @property
    def cni_cache_dir(self) -> Path:
        return self.state_dir / "cni" / "results"

    def ipam_dir(self, node: str) -> Path:
        return self.node_state_dir(node) / "networks"

    @property
    def sandbox_dir(self) -> Path:
        return self.run_dir / "sandboxes"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"
