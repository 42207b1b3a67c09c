"""Bearer-token authentication and a two-level authorization: full access or read-only.

The token file is kube-apiserver's static token CSV (`token,user,uid[,"group1,group2"]`). A
user in the `netlab:read-only` group may only get, list and watch; everybody else with a valid
token may do anything. A missing file is created on first start with an `admin` token and a
`viewer` (read-only) token, readable only by root. Comparison is constant-time.
"""

from __future__ import annotations

import csv
import hmac
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from netlab.errors import ConfigError

READ_ONLY_GROUP = "netlab:read-only"
ADMIN_GROUP = "system:masters"
READ_VERBS = frozenset({"get", "list", "watch"})


@dataclass(frozen=True)
class User:
    name: str
    uid: str
    groups: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return READ_ONLY_GROUP in self.groups

    def may(self, verb: str) -> bool:
        return verb in READ_VERBS or not self.read_only


def parse_token_file(text: str, source: str = "token file") -> dict[str, User]:
    tokens: dict[str, User] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ConfigError(f"{source}:{n}: expected token,user,uid[,groups]")
        token, user, uid = (c.strip() for c in row[:3])
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        if not token or not user:
            raise ConfigError(f"{source}:{n}: token and user must not be empty")
        tokens[token] = User(user, uid, groups)
    if not tokens:
        raise ConfigError(f"{source}: no tokens")
    return tokens


def ensure_token_file(path: Path) -> None:
    """Create the token file with an admin and a read-only token unless it exists."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f'{secrets.token_urlsafe(32)},admin,admin,"{ADMIN_GROUP}"\n'
        f'{secrets.token_urlsafe(32)},viewer,viewer,"{READ_ONLY_GROUP}"\n'
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def load_token_file(path: Path) -> dict[str, User]:
    try:
        return parse_token_file(path.read_text(), str(path))
    except OSError as e:
        raise ConfigError(f"cannot read token file {path}: {e.strerror}") from None


def token_for(tokens: dict[str, User], user: str) -> str:
    for token, u in tokens.items():
        if u.name == user:
            return token
    raise ConfigError(f"no token for user {user!r}")


class Authenticator:
    def __init__(self, tokens: dict[str, User]) -> None:
        self._tokens = tokens

    def authenticate(self, authorization: str | None) -> User | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        token = token.strip()
        found = None
        for candidate, user in self._tokens.items():
            if hmac.compare_digest(candidate.encode(), token.encode()):
                found = user
        return found
