"""API errors and the `Status` objects that carry them.

Every failure the apiserver returns is a `metav1.Status` with the HTTP code, a machine-readable
`reason` and, for validation, `details.causes` naming each bad field: kubectl prints
`Error from server (<reason>): <message>` from it and the Python client raises `ApiException`
with it as the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_json(self) -> dict[str, str]:
        return {
            "reason": self.reason,
            "message": self.message,  # the field is its own member; kubectl prints both
            "field": self.field,
        }


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    kind: str = ""  # the resource (plural, qualified) for details
    name: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after: int | None = None
    group: str = ""  # for details, with `kind`, where that is a kind (Invalid)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        return status_object(
            self.code, self.reason, self.message, self.kind, self.name, self.causes, self.group
        )


def status_object(
    code: int,
    reason: str,
    message: str,
    kind: str = "",
    name: str = "",
    causes: list[Cause] | None = None,
    group: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    if causes:
        details["causes"] = [c.to_json() for c in causes]
    if details:
        out["details"] = details
    return out


def success(kind: str = "", name: str = "", code: int = 200) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": code,
    }
    if name or kind:
        out["details"] = {k: v for k, v in (("name", name), ("kind", kind)) if v}
    return out


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind} "{name}" not found', kind, name)


def already_exists(kind: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{kind} "{name}" already exists', kind, name)


def conflict(kind: str, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind} "{name}": {why}', kind, name)


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def gone(message: str = "The resourceVersion for the provided watch is too old.") -> ApiError:
    return ApiError(410, "Expired", message)


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid: `<Kind>[.<group>] "<name>" is invalid: <field>: <message>, ...` as upstream.

    Unlike other errors, upstream's details name the kind (`Secret`) and its group, not the
    resource (`secrets`): kubectl prints `The Secret "x" is invalid: <field>: <message>` from
    them, the field taken from each cause.
    """
    text = ", ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(
        422, "Invalid", f'{qualified} "{name}" is invalid: {text}', kind, name, causes, group=group
    )


def forbidden(message: str, kind: str = "", name: str = "") -> ApiError:
    return ApiError(403, "Forbidden", message, kind, name)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)
