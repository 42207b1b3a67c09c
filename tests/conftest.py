"""Shared test plumbing: requirement markers, per-test labs, and the host-untouched check.

Tests are marked by what they need (`root`, `etcd`, `bpf`, `ipvs_vm`, `vagrant`). A marked test
is skipped, with the reason, only when its requirement is really absent on this machine; the
setup step installs all of them except Vagrant.

Every integration test gets its own `Layout`: a name prefix `nl-t<hex>-` and private state and
run directories, so tests never meet each other's namespaces or files. At the end of the
session the host's own network namespace must look exactly as it did at the start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.layout import Layout
from tests import hostsnap


def _missing(marker: str) -> str | None:
    if marker == "root":
        return None if os.geteuid() == 0 else "needs root"
    if marker == "etcd":
        return None if shutil.which("etcd") else "etcd is not installed (apt-get install etcd-server)"
    if marker == "bpf":
        try:
            import bcc  # noqa: F401
        except ImportError:
            return "bcc is not importable (apt-get install python3-bpfcc; venv with system site-packages)"
        return None
    if marker == "ipvs_vm":
        return None if shutil.which("vng") else "virtme-ng (vng) is not installed"
    if marker == "vagrant":
        return None if shutil.which("vagrant") else "vagrant is not installed"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker in ("root", "etcd", "bpf", "ipvs_vm", "vagrant"):
            if item.get_closest_marker(marker):
                reason = _missing(marker)
                if reason:
                    item.add_marker(pytest.mark.skip(reason=f"{marker}: {reason}"))


_before: dict[str, str] = {}
# Prefixes handed out by `layout` in this session. Only their namespaces are checked for leaks,
# so a suite running beside another one on the same machine is not blamed for its namespaces.
_issued_prefixes: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:
        _before.update(hostsnap.snapshot(_issued_prefixes))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _before:
        return
    problems = hostsnap.differences(_before, hostsnap.snapshot(_issued_prefixes))
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "\n\n".join(problems)
        if reporter:
            reporter.write_sep("=", "the test suite changed the host's network namespace", red=True)
            reporter.write_line(text)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def new_layout(base: Path) -> Layout:
    """A private lab identity: unique name prefix, state and run directories under `base`."""
    lay = Layout(prefix=f"nl-t{secrets.token_hex(3)}-", state_dir=base / "state", run_dir=base / "run")
    _issued_prefixes.add(lay.prefix)
    return lay


def remove_test_namespaces(lay: Layout) -> None:
    """Kill what runs in the layout's namespaces and remove them (a safety net for failures)."""
    from netlab import kernel

    for name in kernel.list_netns():
        if name.startswith(lay.prefix):
            for pid in kernel.netns_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            kernel.delete_netns(name)


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    """A private lab for one test."""
    lay = new_layout(tmp_path)
    yield lay
    remove_test_namespaces(lay)


@pytest.fixture(scope="module")
def module_layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """A private lab shared by the tests of one module (for labs that are slow to build)."""
    lay = new_layout(tmp_path_factory.mktemp("lab"))
    yield lay
    remove_test_namespaces(lay)


class EtcdForTest:
    """A real etcd on free loopback ports with private data; restartable on the same port."""

    def __init__(self, base: Path) -> None:
        self.layout = new_layout(base)
        self.port: int | None = None
        self.url = ""

    def start(self) -> str:
        from netlab.etcd import server

        # a short progress interval lets tests see progress notifications quickly
        self.url = server.start(
            self.layout, port=self.port, any_port=self.port is None, progress_interval="1s"
        )
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    def stop(self) -> None:
        from netlab.etcd import server

        server.stop(self.layout)


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One etcd for the whole session; tests keep to their own key prefixes."""
    e = EtcdForTest(tmp_path_factory.mktemp("etcd-shared"))
    e.start()
    try:
        yield e.url
    finally:
        e.stop()


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdForTest]:
    """A private etcd for tests that stop and restart it."""
    e = EtcdForTest(tmp_path / "etcd")
    e.start()
    try:
        yield e
    finally:
        e.stop()
