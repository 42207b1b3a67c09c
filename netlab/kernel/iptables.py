"""iptables in one namespace: restore runs, chain listings, ensured jump rules.

Rule sets are written with one `iptables-restore --noflush` per sync (an atomic table
replacement that leaves other owners' chains alone); single jump rules from built-in chains
are checked with `-C` and inserted with `-I`, which is how kube-proxy keeps them.

Backend choice. Debian's `iptables` is the nf_tables backend (iptables-nft 1.8.9). Measured
here, in a fresh namespace, for kube-proxy's layout with 5,000 services of two endpoints
(55,000 lines, 15,000 chains):

| run | legacy | nft |
|---|---|---|
| full restore `--noflush` | 0.25 s | 4.0 s |
| same input without `--noflush` | | 0.56 s |
| one-chain restore into the loaded table | 0.10 s | 0.02 s |

iptables-nft spends the extra seconds in user space (strcmp over a chain list per chain in
`--noflush` mode: 1,000 services take 0.22 s, 5,000 take 4 s), and `--noflush` cannot be
dropped without wiping other owners' chains. Legacy replaces the whole table in one
setsockopt, so its cost is linear in the table size whatever changed: about 0.1 s per restore
at 5,000 services and a few ms at lab sizes. Legacy is the default (`DEFAULT_BACKEND`) because
it bounds the worst case (start-up, resync, mode switch) at a fraction of a second where nft
takes seconds; callers may pick nft. All of one owner's chains must live in one backend: a
jump cannot cross from an nft chain to a legacy one. Both backends' hooks see every packet, so
the reference CNI plugins' nft rules (portmap, masquerade) keep working beside legacy kube
chains.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterable, Sequence

from netlab.errors import ConfigError, KernelError, PrerequisiteError
from netlab.kernel.commands import popen_in_netns, run

BACKENDS = ("legacy", "nft")
DEFAULT_BACKEND = "legacy"


def _tool(backend: str, what: str = "", family: int = 4) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown iptables backend {backend!r}: use legacy or nft")
    return f"{'ip6tables' if family == 6 else 'iptables'}-{backend}{what}"


def iptables_restore(netns: str | None, text: str, backend: str = DEFAULT_BACKEND, family: int = 4) -> None:
    """Apply restore input with `--noflush`: chains not named in `text` are left alone."""
    if text:
        iptables_restore_stream(netns, [text], backend, family)


def iptables_restore_stream(
    netns: str | None, chunks: Iterable[str], backend: str = DEFAULT_BACKEND, family: int = 4
) -> str:
    """`iptables_restore` of text produced while it is applied; returns the whole text.

    iptables-restore acts on each line as it reads it and touches the kernel only at COMMIT,
    so a caller that renders 50,000 lines hands them over as they come: the tool parses on the
    other core while the caller renders, instead of after it. Its error output goes to a file,
    never a pipe nobody reads while the input is written.
    """
    argv = [_tool(backend, "-restore", family), "--noflush", "-w", "5"]
    written: list[str] = []
    with tempfile.TemporaryFile() as errors:
        try:
            proc = popen_in_netns(
                netns, argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, text=True
            )
        except FileNotFoundError:
            raise PrerequisiteError(f"{argv[0]} is not installed (run the setup step)") from None
        with proc:
            stdin = proc.stdin
            assert stdin is not None
            try:
                try:
                    for chunk in chunks:
                        written.append(chunk)
                        stdin.write(chunk)
                except BrokenPipeError:  # the tool stopped at a bad line: its message says which
                    pass
                with contextlib.suppress(BrokenPipeError):
                    stdin.close()
                proc.wait(timeout=120)
            except BaseException:  # a failing producer, a timeout, an interrupt: kill before EOF
                proc.kill()
                with contextlib.suppress(OSError):
                    stdin.close()  # what is still buffered has nowhere to go
                raise
        if proc.returncode != 0:
            errors.seek(0)
            msg = errors.read().decode(errors="replace").strip().splitlines()
            where = f" in {netns}" if netns else ""
            raise KernelError(f"{argv[0]}{where} failed: {msg[-1] if msg else proc.returncode}")
    return "".join(written)


def iptables_save(netns: str | None, table: str, backend: str = DEFAULT_BACKEND, family: int = 4) -> str:
    return run(netns, [_tool(backend, "-save", family), "-t", table], timeout=60).stdout


def iptables_chains(netns: str | None, table: str, backend: str = DEFAULT_BACKEND) -> set[str]:
    """Names of all chains in `table` (built-in and user-defined)."""
    return {
        line[1:].split()[0]
        for line in iptables_save(netns, table, backend).splitlines()
        if line.startswith(":")
    }


def _rule_argv(backend: str, op: str, table: str, chain: str, spec: Sequence[str]) -> list[str]:
    return [_tool(backend), "-w", "5", "-t", table, op, chain, *spec]


def iptables_rule_exists(
    netns: str | None, table: str, chain: str, spec: Sequence[str], backend: str = DEFAULT_BACKEND
) -> bool:
    proc = run(netns, _rule_argv(backend, "-C", table, chain, spec), check=False)
    if proc.returncode == 0:
        return True
    if proc.returncode == 1:
        return False
    raise KernelError(f"iptables -C {table} {chain} failed: {proc.stderr.strip()}")


def ensure_iptables_rule(
    netns: str | None, table: str, chain: str, spec: Sequence[str], backend: str = DEFAULT_BACKEND
) -> bool:
    """Insert `spec` at the top of `chain` unless it is there. True when it was inserted."""
    if iptables_rule_exists(netns, table, chain, spec, backend):
        return False
    run(netns, _rule_argv(backend, "-I", table, chain, spec))
    return True


def delete_iptables_rule(
    netns: str | None, table: str, chain: str, spec: Sequence[str], backend: str = DEFAULT_BACKEND
) -> bool:
    """Delete every copy of `spec` from `chain`. True when one was deleted."""
    deleted = False
    while iptables_rule_exists(netns, table, chain, spec, backend):
        run(netns, _rule_argv(backend, "-D", table, chain, spec))
        deleted = True
    return deleted


def delete_iptables_chains(
    netns: str | None, table: str, chains: Sequence[str], backend: str = DEFAULT_BACKEND
) -> None:
    """Flush and delete user chains in one transaction (all flushed before any is deleted)."""
    if not chains:
        return
    lines = [f"*{table}", *(f":{c} - [0:0]" for c in chains), *(f"-X {c}" for c in chains), "COMMIT", ""]
    iptables_restore(netns, "\n".join(lines), backend)
