"""iptables mode, the applying half: one `iptables-restore --noflush` per sync.

The mode remembers the rules of every service port (`PortRules`) and every chain it applied.
A partial sync re-renders only the changed service ports, reassembles the shared chains from
the remembered pieces, and writes only the chains whose rules differ; chains that are no
longer wanted are deleted in the same transaction. A full sync (the first, every periodic
resync, and any sync after a failure) rewrites every chain, re-checks the jump rules from the
built-in chains, and deletes leftover service chains found in the kernel. After the rules,
stale UDP conntrack entries are cleared.
"""

from __future__ import annotations

import logging

from netlab.kernel.conntrack import delete_conntrack
from netlab.kernel.iptables import (
    BACKENDS,
    DEFAULT_BACKEND,
    delete_iptables_chains,
    delete_iptables_rule,
    ensure_iptables_rule,
    iptables_chains,
    iptables_restore,
    iptables_save,
)
from proxy.conntrack import plan_conntrack_cleanup
from proxy.iptables.render import (
    FILTER,
    FIXED_CHAINS,
    JUMP_RULES,
    NAT,
    SERVICE_CHAIN_PREFIXES,
    Chain,
    PortRules,
    assemble,
    is_large,
    render_service_port,
    restore_text,
)
from proxy.mode import NodeInfo
from proxy.model import ServicePortName, Snapshot

log = logging.getLogger(__name__)


class IptablesMode:
    name = "iptables"

    def __init__(self, netns: str, node: NodeInfo, backend: str = DEFAULT_BACKEND) -> None:
        self.netns = netns
        self.node = node
        self.backend = backend
        self._ports: dict[ServicePortName, PortRules] = {}
        self._applied: dict[Chain, tuple[str, ...]] | None = None
        self._snapshot: Snapshot | None = None
        self._large: bool | None = None
        self.last_restore = ""  # the last restore input, for `show` and debugging

    def _existing_chains(self) -> list[Chain]:
        return [
            (table, chain)
            for table in (FILTER, NAT)
            for chain in iptables_chains(self.netns, table, self.backend)
            if chain.startswith(SERVICE_CHAIN_PREFIXES)
        ]

    def sync(self, snapshot: Snapshot, changed: frozenset[ServicePortName] | None) -> None:
        large = is_large(snapshot)
        full = changed is None or self._applied is None or large != self._large
        comments = not large
        if full:
            ports = {
                spn: render_service_port(svc, snapshot.endpoints_of(spn), self.node, comments)
                for spn, svc in snapshot.services.items()
            }
            touched: frozenset[ServicePortName] = frozenset(snapshot.services) | frozenset(
                self._snapshot.services if self._snapshot else ()
            )
        else:
            assert changed is not None
            ports = dict(self._ports)
            for spn in changed:
                svc = snapshot.services.get(spn)
                if svc is None:
                    ports.pop(spn, None)
                else:
                    ports[spn] = render_service_port(svc, snapshot.endpoints_of(spn), self.node, comments)
            touched = changed
        desired = assemble(ports[spn] for spn in sorted(ports))
        existing = self._existing_chains() if full else []
        text = restore_text(desired, None if full else self._applied, existing)
        try:
            iptables_restore(self.netns, text, self.backend)
            if full:
                for table, chain, spec in JUMP_RULES:
                    ensure_iptables_rule(self.netns, table, chain, spec, self.backend)
        except Exception:
            self._applied = None  # unknown kernel state: the retry rewrites everything
            raise
        self.last_restore = text
        for d in plan_conntrack_cleanup(self._snapshot, snapshot, touched, self.node.name):
            delete_conntrack(self.netns, d.protocol, d.orig_dst, d.orig_port_dst, d.dst_nat)
        self._ports, self._applied, self._snapshot, self._large = ports, desired, snapshot, large

    def cleanup(self) -> None:
        """Remove the jump rules and every KUBE chain this mode makes, in both backends."""
        fixed = {c for _, c in FIXED_CHAINS}
        for backend in BACKENDS:
            present = {t: iptables_chains(self.netns, t, backend) for t in (FILTER, NAT)}
            for table, chain, spec in JUMP_RULES:
                if spec[-1] in present[table]:  # a jump to a missing chain cannot exist
                    delete_iptables_rule(self.netns, table, chain, spec, backend)
            for table in (FILTER, NAT):
                chains = [c for c in present[table] if c in fixed or c.startswith(SERVICE_CHAIN_PREFIXES)]
                delete_iptables_chains(self.netns, table, sorted(chains), backend)
        self._ports, self._applied, self._snapshot, self._large = {}, None, None, None

    def close(self) -> None:
        pass

    def show(self) -> str:
        """The kube rules as the kernel has them (`iptables-save`, KUBE chains and jumps only)."""
        out = []
        for table in (FILTER, NAT):
            lines = [
                line
                for line in iptables_save(self.netns, table, self.backend).splitlines()
                if "KUBE-" in line
            ]
            if lines:
                out += [f"*{table}", *lines]
        return "\n".join(out)
