"""iptables mode, the pure half: snapshot in, `iptables-restore` text out.

The layout is kube-proxy's, so what a user reads here is what a real node shows:
`KUBE-SERVICES` dispatches on VIP:port and ends with the jump to `KUBE-NODEPORTS`;
`KUBE-SVC-*` balances over `KUBE-SEP-*` with `statistic` probabilities 1/n, 1/(n-1), ...;
`KUBE-SVL-*` does the same over local endpoints for a Local traffic policy; `KUBE-EXT-*` is
the entry for NodePorts, external IPs and load-balancer IPs; `KUBE-SEP-*` marks hairpin
traffic for masquerade and DNATs; `KUBE-MARK-MASQ` sets 0x4000 and `KUBE-POSTROUTING`
masquerades what carries it. Services without usable endpoints get a REJECT (or, for a Local
policy whose endpoints live on other nodes, a DROP) in the filter table.

Rendering is split so that a partial sync costs little: `render_service_port` gives each
service port its own chains plus its lines in the shared dispatch chains; `assemble` puts the
per-port pieces together; `restore_text` writes only chains whose rules differ from what was
applied last (all of them on a full sync) and deletes chains no longer wanted;
`full_restore_chunks` gives a full sync's input in pieces, port by port, for an applier that
writes while it renders (the same effect as `restore_text`, in dependency order). A `:CHAIN`
line in `iptables-restore --noflush` input creates or flushes that chain and leaves all other
chains (other owners' included) untouched.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from proxy.mode import NodeInfo
from proxy.model import Endpoint, ServicePort, ServicePortName, Snapshot, usable_endpoints

MASQ_MARK = "0x4000"
LARGE_CLUSTER_ENDPOINTS = 1000  # above this, per-endpoint comments are left out (kube-proxy's rule)

NAT, FILTER, MANGLE = "nat", "filter", "mangle"
TABLES = (FILTER, NAT, MANGLE)  # the order restore input writes them in
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"

# Per-service chain prefixes; a chain with one of them and not in the desired set is stale.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")

# The chains this mode owns outright, in the order they are written.
FIXED_CHAINS: tuple[tuple[str, str], ...] = (
    (FILTER, KUBE_SERVICES),
    (FILTER, KUBE_EXTERNAL_SERVICES),
    (FILTER, KUBE_FORWARD),
    (NAT, KUBE_SERVICES),
    (NAT, KUBE_NODEPORTS),
    (NAT, KUBE_POSTROUTING),
    (NAT, KUBE_MARK_MASQ),
)

# Jumps from the built-in chains; the applier ensures each exists (iptables -C, then -I).
JUMP_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (NAT, "PREROUTING", ("-m", "comment", "--comment", "kubernetes service portals", "-j", KUBE_SERVICES)),
    (NAT, "OUTPUT", ("-m", "comment", "--comment", "kubernetes service portals", "-j", KUBE_SERVICES)),
    (NAT, "POSTROUTING", ("-m", "comment", "--comment", "kubernetes postrouting rules",
                          "-j", KUBE_POSTROUTING)),
    (FILTER, "FORWARD", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                         "kubernetes service portals", "-j", KUBE_SERVICES)),
    (FILTER, "OUTPUT", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                        "kubernetes service portals", "-j", KUBE_SERVICES)),
    (FILTER, "INPUT", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                       "kubernetes externally-visible service portals", "-j", KUBE_EXTERNAL_SERVICES)),
    (FILTER, "FORWARD", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                         "kubernetes externally-visible service portals", "-j", KUBE_EXTERNAL_SERVICES)),
    (FILTER, "FORWARD", ("-m", "comment", "--comment", "kubernetes forwarding rules", "-j", KUBE_FORWARD)),
)  # fmt: skip

Chain = tuple[str, str]  # (table, chain name)


def rule_text(chain: str, spec: tuple[str, ...]) -> str:
    """A rule as iptables-save prints it (arguments with spaces quoted)."""
    return " ".join(["-A", chain, *(f'"{a}"' if " " in a else a for a in spec)])


def missing_jumps(
    jumps: Iterable[tuple[str, str, tuple[str, ...]]], saved: Mapping[str, str]
) -> list[tuple[str, str, tuple[str, ...]]]:
    """The jump rules absent from `saved` (iptables-save text per table).

    Our jump specs are written in the order and quoting iptables-save uses, so presence is a
    line comparison and one save replaces a `-C` per rule.
    """
    out = []
    for table, chain, spec in jumps:
        # a whole-line match, as a substring search: the saved nat table can be 50,000 lines
        if f"\n{rule_text(chain, spec)}\n" not in "\n" + saved.get(table, ""):
            out.append((table, chain, spec))
    return out


def insert_jumps(text: str, jumps: Iterable[tuple[str, str, tuple[str, ...]]]) -> str:
    """Restore input with `-I` lines for `jumps` added to the right tables' sections.

    Built-in chains are not declared, so `--noflush` leaves their other rules alone; the
    inserts land in the same transaction as the chains they jump to.
    """
    by_table: dict[str, list[str]] = {}
    for table, chain, spec in jumps:
        by_table.setdefault(table, []).append(rule_text(chain, spec).replace("-A ", "-I ", 1))
    if not by_table:
        return text
    text = text if not text or text.endswith("\n") else text + "\n"
    for table, inserts in by_table.items():
        start = ("\n" + text).find(f"\n*{table}\n")
        if start < 0:
            text += f"*{table}\nCOMMIT\n"
            start = ("\n" + text).find(f"\n*{table}\n")
        # before the table's COMMIT (string splicing: a full sync's text can be 50,000 lines)
        commit = ("\n" + text).find("\nCOMMIT\n", start)
        text = text[:commit] + "".join(line + "\n" for line in inserts) + text[commit:]
    return text


@lru_cache(maxsize=65536)
def _hash16(key: str) -> str:
    # base32 maps each 5 bytes to 8 characters, so 10 bytes give exactly the first 16
    return base64.b32encode(hashlib.sha256(key.encode()).digest()[:10]).decode()


def service_chain(prefix: str, spn: ServicePortName) -> str:
    """kube-proxy's `KUBE-SVC-`/`SVL-`/`EXT-`/`FW-` name: 16 base32 chars of sha256."""
    return prefix + _hash16(str(spn) + spn.protocol.lower())


def endpoint_chain(spn: ServicePortName, ep: Endpoint) -> str:
    return "KUBE-SEP-" + _hash16(str(spn) + spn.protocol.lower() + str(ep))


@dataclass(frozen=True)
class PortRules:
    """What one service port contributes: its own chains and its lines in shared chains."""

    chains: Mapping[Chain, tuple[str, ...]] = field(default_factory=dict)
    shared: Mapping[Chain, tuple[str, ...]] = field(default_factory=dict)


def _q(text: str) -> str:
    """Quoted as iptables-save quotes: only when the text has spaces."""
    return f'"{text}"' if " " in text else text


def _c(text: str) -> str:
    return f"-m comment --comment {_q(text)}"


def _balance(
    spn: ServicePortName,
    svc: ServicePort,
    chain: str,
    endpoints: tuple[Endpoint, ...],
    comments: bool,
) -> list[str]:
    """Affinity checks, then random choice over the endpoints' chains."""
    name = str(spn)
    lines = []
    seps = [endpoint_chain(spn, ep) for ep in endpoints]
    if svc.affinity_timeout is not None:
        for sep in seps:
            lines.append(
                f"-A {chain} -m comment --comment {name} -m recent --name {sep} "
                f"--rcheck --seconds {svc.affinity_timeout} --reap -j {sep}"
            )
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        comment = f"-m comment --comment {_q(f'{name} -> {ep}')} " if comments else ""
        stat = f"-m statistic --mode random --probability {1.0 / (n - i):0.10f} " if i < n - 1 else ""
        lines.append(f"-A {chain} {comment}{stat}-j {seps[i]}")
    return lines


def render_service_port(
    svc: ServicePort,
    endpoints: tuple[Endpoint, ...],
    node: NodeInfo,
    comments: bool = True,
) -> PortRules:
    """The rules of one service port: pure, and independent of every other port."""
    spn = svc.name
    name = str(spn)
    proto = svc.protocol.lower()
    match = f"-m {proto} -p {proto}"
    choice = usable_endpoints(svc, endpoints, node.name)

    suffix = service_chain("", spn)  # SVC, SVL and EXT share the hash
    svc_chain, svl_chain, ext_chain = "KUBE-SVC-" + suffix, "KUBE-SVL-" + suffix, "KUBE-EXT-" + suffix
    internal_chain = svl_chain if svc.internal_local else svc_chain
    internal_eps = choice.local if svc.internal_local else choice.cluster
    external_eps = choice.local if svc.external_local else choice.cluster

    chains: dict[Chain, list[str]] = {}
    nat_services: list[str] = []
    nat_nodeports: list[str] = []
    filter_services: list[str] = []
    filter_external: list[str] = []

    def no_endpoints_target(local: bool) -> tuple[str, str]:
        if local and choice.has_any:
            return "DROP", f"{name} has no local endpoints"
        return "REJECT", f"{name} has no endpoints"

    vip = f"-d {svc.cluster_ip}/32 --dport {svc.port}"
    if internal_eps:
        nat_services.append(
            f"-A {KUBE_SERVICES} {_c(name + ' cluster IP')} {match} {vip} -j {internal_chain}"
        )
    else:
        target, why = no_endpoints_target(svc.internal_local)
        filter_services.append(f"-A {KUBE_SERVICES} -m comment --comment {_q(why)} {match} {vip} -j {target}")

    if svc.has_external:
        external_dsts = [(ip, "external IP") for ip in svc.external_ips] + [
            (ip, "loadbalancer IP") for ip in svc.load_balancer_ips
        ]
        if external_eps:
            for ip, kind in external_dsts:
                nat_services.append(
                    f"-A {KUBE_SERVICES} -m comment --comment {_q(f'{name} {kind}')} {match} "
                    f"-d {ip}/32 --dport {svc.port} -j {ext_chain}"
                )
            if svc.node_port:
                nat_nodeports.append(
                    f"-A {KUBE_NODEPORTS} {_c(name)} {match} --dport {svc.node_port} -j {ext_chain}"
                )
            ext: list[str] = []
            if svc.external_local:
                if choice.cluster:
                    ext.append(
                        f"-A {ext_chain} {_c(f'pod traffic for {name} external destinations')} "
                        f"-s {node.cluster_cidr} -j {svc_chain}"
                    )
                    ext.append(
                        f"-A {ext_chain} -m comment "
                        f"--comment {_q(f'masquerade LOCAL traffic for {name} external destinations')} "
                        f"-m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"
                    )
                    ext.append(
                        f"-A {ext_chain} -m comment "
                        f"--comment {_q(f'route LOCAL traffic for {name} external destinations')} "
                        f"-m addrtype --src-type LOCAL -j {svc_chain}"
                    )
                ext.append(f"-A {ext_chain} -j {svl_chain}")
            else:
                ext.append(
                    f"-A {ext_chain} -m comment "
                    f"--comment {_q(f'masquerade traffic for {name} external destinations')} "
                    f"-j {KUBE_MARK_MASQ}"
                )
                ext.append(f"-A {ext_chain} -j {svc_chain}")
            chains[(NAT, ext_chain)] = ext
        else:
            target, why = no_endpoints_target(svc.external_local)
            for ip, _ in external_dsts:
                filter_external.append(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {_q(why)} {match} "
                    f"-d {ip}/32 --dport {svc.port} -j {target}"
                )
            if svc.node_port:
                filter_external.append(
                    f"-A {KUBE_EXTERNAL_SERVICES} {_c(why)} -m addrtype --dst-type LOCAL "
                    f"{match} --dport {svc.node_port} -j {target}"
                )

    # the cluster chain exists when something jumps to it: KUBE-SERVICES (Cluster internal
    # policy) or KUBE-EXT (external traffic, either policy: pod and local sources use it)
    uses_svc_chain = bool(choice.cluster) and (not svc.internal_local or bool(external_eps))
    if uses_svc_chain:
        lines = [
            f"-A {svc_chain} -m comment --comment {_q(name + ' cluster IP')} {match} {vip} "
            f"! -s {node.cluster_cidr} -j {KUBE_MARK_MASQ}"
        ]
        lines += _balance(spn, svc, svc_chain, choice.cluster, comments)
        chains[(NAT, svc_chain)] = lines
    if choice.local and svc.uses_local_endpoints:
        chains[(NAT, svl_chain)] = _balance(spn, svc, svl_chain, choice.local, comments)

    for ep in choice.reachable:
        sep = endpoint_chain(spn, ep)
        c = f"-m comment --comment {name} " if comments else ""
        recent = f"-m recent --name {sep} --set " if svc.affinity_timeout is not None else ""
        chains[(NAT, sep)] = [
            f"-A {sep} {c}-s {ep.ip}/32 -j {KUBE_MARK_MASQ}",
            f"-A {sep} {c}{recent}{match} -j DNAT --to-destination {ep}",
        ]

    shared: dict[Chain, tuple[str, ...]] = {}
    for key, lines in (
        ((NAT, KUBE_SERVICES), nat_services),
        ((NAT, KUBE_NODEPORTS), nat_nodeports),
        ((FILTER, KUBE_SERVICES), filter_services),
        ((FILTER, KUBE_EXTERNAL_SERVICES), filter_external),
    ):
        if lines:
            shared[key] = tuple(lines)
    return PortRules({k: tuple(v) for k, v in chains.items()}, shared)


def fixed_rules() -> dict[Chain, list[str]]:
    """The rules of the chains every sync writes, before the services' lines are added."""
    return {
        (FILTER, KUBE_SERVICES): [],
        (FILTER, KUBE_EXTERNAL_SERVICES): [],
        (FILTER, KUBE_FORWARD): [
            f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP",
            f"-A {KUBE_FORWARD} -m comment --comment {_q('kubernetes forwarding rules')} "
            f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
            f"-A {KUBE_FORWARD} -m comment --comment {_q('kubernetes forwarding conntrack rule')} "
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ],
        (NAT, KUBE_SERVICES): [],
        (NAT, KUBE_NODEPORTS): [],
        (NAT, KUBE_POSTROUTING): [
            f"-A {KUBE_POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
            f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {MASQ_MARK}",
            f"-A {KUBE_POSTROUTING} -m comment --comment {_q('kubernetes service traffic requiring SNAT')} "
            "-j MASQUERADE --random-fully",
        ],
        (NAT, KUBE_MARK_MASQ): [f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {MASQ_MARK}"],
    }


NODEPORTS_JUMP = (
    f"-A {KUBE_SERVICES} -m comment "
    f"--comment {_q('kubernetes service nodeports; NOTE: this must be the last rule in this chain')} "
    f"-m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}"
)


def assemble_shared(ports: Iterable[PortRules]) -> dict[Chain, tuple[str, ...]]:
    """The fixed chains with every port's lines in the shared ones (`KUBE-SERVICES`...)."""
    chains = fixed_rules()
    for pr in ports:
        for key, lines in pr.shared.items():
            chains[key].extend(lines)
    chains[(NAT, KUBE_SERVICES)].append(NODEPORTS_JUMP)
    return {k: tuple(v) for k, v in chains.items()}


def assemble(ports: Iterable[PortRules]) -> dict[Chain, tuple[str, ...]]:
    """Every chain the mode wants, with its rules: fixed chains, shared lines, own chains."""
    ports = list(ports)
    out = assemble_shared(ports)
    for pr in ports:
        out.update(pr.chains)
    return out


def reassemble(
    applied: Mapping[Chain, tuple[str, ...]],
    ports: Iterable[PortRules],
    old: Iterable[PortRules],
    new: Iterable[PortRules],
) -> tuple[dict[Chain, tuple[str, ...]], set[Chain]]:
    """`assemble` for a partial sync: the applied chains with `old` port rules swapped for `new`.

    Returns the desired chains and the keys that may differ from `applied` (the shared chains
    and the own chains of the swapped ports), so `restore_text` compares only those.
    """
    desired = dict(applied)
    touched: set[Chain] = set(fixed_rules())
    for pr in old:
        for key in pr.chains:
            desired.pop(key, None)
            touched.add(key)
    for pr in new:
        desired.update(pr.chains)
        touched.update(pr.chains)
    desired.update(assemble_shared(ports))
    return desired, touched


def is_large(snapshot: Snapshot) -> bool:
    return sum(len(v) for v in snapshot.endpoints.values()) > LARGE_CLUSTER_ENDPOINTS


def render(snapshot: Snapshot, node: NodeInfo) -> dict[Chain, tuple[str, ...]]:
    """All chains for a snapshot (what a full sync writes)."""
    comments = not is_large(snapshot)
    return assemble(
        render_service_port(snapshot.services[spn], snapshot.endpoints_of(spn), node, comments)
        for spn in sorted(snapshot.services)
    )


_FIXED_ORDER = {key: i for i, key in enumerate(FIXED_CHAINS)}


def _order(key: Chain) -> tuple[int, int, str]:
    table, chain = key
    return (TABLES.index(table), _FIXED_ORDER.get(key, len(FIXED_CHAINS)), chain)


KernelState = tuple[Iterable[Chain], Iterable[tuple[str, str, tuple[str, ...]]]]


def full_restore_chunks(ports: Iterable[PortRules], kernel_state: Callable[[], KernelState]) -> Iterator[str]:
    """A full sync's restore input, a piece at a time, for a caller that renders as it writes.

    The same chains, rules, deletions and jump inserts as
    `insert_jumps(restore_text(assemble(ports), None, existing), jumps)`, in an order that
    lets each piece go out as soon as it is rendered: the nat table first, each service
    port's chains declared and filled as that port comes (they jump only to their own chains
    and the fixed ones, declared first), then the shared chains, which need every port. The
    kernel's state (leftover chains, missing jumps) is asked for only then, so reading it
    overlaps the rendering. The filter table, small, follows.
    """
    seen: list[PortRules] = []
    own: dict[str, set[str]] = {FILTER: set(), NAT: set()}
    later: dict[Chain, tuple[str, ...]] = {}  # own filter chains, written with their table
    fixed_decls = {t: [f":{c} - [0:0]\n" for tt, c in FIXED_CHAINS if tt == t] for t in (FILTER, NAT)}
    yield "*nat\n" + "".join(fixed_decls[NAT])
    for pr in ports:
        seen.append(pr)
        keys = sorted(pr.chains, key=_order)
        for table, chain in keys:
            own[table].add(chain)
        nat = [k for k in keys if k[0] == NAT]
        later.update((k, pr.chains[k]) for k in keys if k[0] == FILTER)
        if nat:
            yield "".join(f":{c} - [0:0]\n" for _, c in nat) + "".join(
                line + "\n" for k in nat for line in pr.chains[k]
            )
    shared = assemble_shared(seen)
    existing, jumps = kernel_state()
    existing = list(existing)
    inserts: dict[str, list[str]] = {FILTER: [], NAT: []}
    for table, chain, spec in jumps:
        inserts[table].append(rule_text(chain, spec).replace("-A ", "-I ", 1))
    for table in (NAT, FILTER):
        fixed = [key for key in FIXED_CHAINS if key[0] == table]
        stale = sorted(
            c for t, c in existing if t == table and c not in own[t] and c.startswith(SERVICE_CHAIN_PREFIXES)
        )
        out = [] if table == NAT else ["*filter\n", *fixed_decls[FILTER]]
        if table == FILTER:
            mine = sorted(later, key=_order)
            out += [f":{c} - [0:0]\n" for _, c in mine]
            out += [line + "\n" for k in mine for line in later[k]]
        out += [line + "\n" for key in fixed for line in shared[key]]
        out += [f":{c} - [0:0]\n" for c in stale]
        out += [f"-X {c}\n" for c in stale]
        out += [line + "\n" for line in inserts[table]]
        out.append("COMMIT\n")
        yield "".join(out)


def restore_text(
    desired: Mapping[Chain, tuple[str, ...]],
    applied: Mapping[Chain, tuple[str, ...]] | None,
    existing: Iterable[Chain] = (),
    only: Iterable[Chain] | None = None,
) -> str:
    """`iptables-restore --noflush` input that turns `applied` into `desired`.

    With `applied` None (a full sync) every desired chain is written. Otherwise only chains
    whose rules changed. Chains in `applied` or `existing` (found in the kernel) that are not
    desired and carry a per-service prefix are flushed and deleted; flushing all of them before
    any `-X` lets chains that jump to each other go in one transaction. `only`, when given,
    limits the comparison to those chains (the caller knows nothing else can differ).
    """
    keys = list(desired) if only is None else [k for k in set(only) if k in desired]
    write = [k for k in keys if applied is None or applied.get(k) != desired[k]]
    dropped = (*(applied or ()), *existing) if only is None else (*only, *existing)
    gone = {k for k in dropped if k not in desired and k[1].startswith(SERVICE_CHAIN_PREFIXES)}
    out: list[str] = []
    for table in TABLES:
        mine = sorted((k for k in write if k[0] == table), key=_order)
        stale = sorted(k for k in gone if k[0] == table)
        if not mine and not stale:
            continue
        out.append(f"*{table}")
        out.extend(f":{chain} - [0:0]" for _, chain in mine)
        out.extend(f":{chain} - [0:0]" for _, chain in stale)
        for key in mine:
            out.extend(desired[key])
        out.extend(f"-X {chain}" for _, chain in stale)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
