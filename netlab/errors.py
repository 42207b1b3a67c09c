"""The one exception tree of netlab.

Library code raises these; only the CLI (`netlab.cli`) and the CNI plugin skeleton
(`netlab.cni.skel`) turn them into exit codes and messages. Every message is written to be
shown to a user as a single line, so it names the object or field at fault.
"""

from __future__ import annotations


class NetlabError(Exception):
    """Base of everything netlab raises on purpose."""


class ConfigError(NetlabError):
    """Bad input: a flag, a topology file, a CNI config, a manifest."""


class NotFound(NetlabError):
    """A named object (namespace, link, node, sandbox) does not exist."""


class AlreadyExists(NetlabError):
    """A named object exists and the caller asked for a new one."""


class KernelError(NetlabError):
    """A kernel operation failed for a reason other than the ones above.

    `errno` keeps the kernel's error number so callers can still decide on it.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class PrerequisiteError(NetlabError):
    """A program, kernel feature or privilege netlab needs is missing."""


class Unavailable(NetlabError):
    """A service netlab talks to (etcd, the apiserver) cannot be reached; the message names it."""


class TryAgain(NetlabError):
    """A transient condition; the caller should retry later."""
