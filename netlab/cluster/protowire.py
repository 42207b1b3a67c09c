"""Protocol Buffers wire format (proto2 semantics), decoded against a schema into JSON values.

kubectl's typed generators send Kubernetes objects as protobuf. Decoding them needs only the
wire format (four wire types: varint, 64-bit, length-delimited, 32-bit) and, per message, a
table of field number -> JSON name and type; `netlab.cluster.k8sproto` holds that table for
the Kubernetes messages.

Why not the `protobuf` package: it parses the wire format only through descriptors, so we would
write the same table again as `FileDescriptorProto`s, and its JSON mapping is proto3's, not
Kubernetes': int64 becomes a string, `metav1.Time`, `IntOrString` and `resource.Quantity`
are plain messages instead of an RFC 3339 string, an int-or-string and a string, embedded Go
structs (a probe's handler, a volume's source) would nest instead of being inlined, and
unknown fields are kept quietly instead of refused. What would be left for the library is
the wire format itself (`read_varint` and `iter_fields`, some fifty lines), and the package
is not otherwise needed here, so this module is hand-written and dependency-free.

The JSON follows Go's encoding of the Kubernetes types, which is what kubectl would have sent
as JSON: a scalar field is left out when it holds its zero value (Go's `omitempty`), except
fields marked as pointers in the schema, whose presence on the wire means "set" (an explicit
`replicas: 0`); message fields are always kept (Go structs are never omitted), except a zero
non-pointer `Time`, which is `null` as in Go's JSON.

A field the schema does not know raises `UnknownField` rather than being skipped: the
apiserver would otherwise store less than the client sent, without a word.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_WIRE_NAMES = {VARINT: "varint", I64: "64-bit", LEN: "length-delimited", I32: "32-bit"}

# scalar kinds and the wire type each is written with
SCALARS: dict[str, int] = {
    "string": LEN,
    "bytes": LEN,
    "bool": VARINT,
    "int32": VARINT,
    "int64": VARINT,
    "uint32": VARINT,
    "uint64": VARINT,
    "double": I64,
    "fixed64": I64,
    "float": I32,
    "fixed32": I32,
}
# Kubernetes types with a JSON form of their own (their messages are length-delimited)
SPECIAL = ("Time", "MicroTime", "IntOrString", "Quantity")


class DecodeError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated, bad wire type...)."""


class UnknownField(Exception):
    """A field (or message) the schema does not know: refused rather than dropped."""

    def __init__(self, message: str, number: int, path: str) -> None:
        super().__init__(f"field {number} of {message} at {path or '.'}")
        self.message, self.number, self.path = message, number, path


@dataclass(frozen=True)
class Field:
    name: str  # the JSON name
    type: str  # a scalar kind, a SPECIAL type, or a message name
    repeated: bool = False
    map: bool = False  # map<string, type>
    pointer: bool = False  # a Go pointer: a zero value on the wire is kept
    inline: bool = False  # an embedded Go struct: its fields go into the parent object


Schema = Mapping[str, Mapping[int, Field]]


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result >> 64:
                raise DecodeError("varint longer than 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value): an int for varint/fixed, the bytes for length-delimited."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire == I64:
            if pos + 8 > end:
                raise DecodeError(f"truncated 64-bit value of field {number}")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == I32:
            if pos + 4 > end:
                raise DecodeError(f"truncated 32-bit value of field {number}")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        elif wire == LEN:
            size, pos = read_varint(buf, pos)
            if pos + size > end:
                raise DecodeError(f"truncated length-delimited field {number} ({size} bytes announced)")
            value = bytes(buf[pos : pos + size])
            pos += size
        else:
            raise DecodeError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _scalar(kind: str, wire: int, value: int | bytes, where: str) -> Any:
    if SCALARS[kind] != wire:
        raise DecodeError(f"{where} is {_WIRE_NAMES.get(wire, wire)}, expected {kind}")
    if isinstance(value, bytes):
        if kind == "bytes":
            return value
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise DecodeError(f"{where} is not valid UTF-8") from None
    if kind == "bool":
        return value != 0
    if kind in ("int32", "int64"):  # a negative int32 is sign-extended to ten bytes on the wire
        return _signed(value, 32 if kind == "int32" else 64)
    if kind == "uint32":
        return value & 0xFFFFFFFF
    if kind == "double":
        return struct.unpack("<d", value.to_bytes(8, "little"))[0]
    if kind == "float":
        return struct.unpack("<f", value.to_bytes(4, "little"))[0]
    return value


def _packed(kind: str, data: bytes, where: str) -> list[Any]:
    wire, out, pos = SCALARS[kind], [], 0
    while pos < len(data):
        if wire == VARINT:
            raw, pos = read_varint(data, pos)
        else:
            size = 8 if wire == I64 else 4
            if pos + size > len(data):
                raise DecodeError(f"truncated packed {where}")
            raw = int.from_bytes(data[pos : pos + size], "little")
            pos += size
        out.append(_scalar(kind, wire, raw, where))
    return out


def _small_message(data: bytes, kinds: dict[int, str], name: str, path: str) -> dict[int, Any]:
    values: dict[int, Any] = {}
    for number, wire, raw in iter_fields(data):
        if number not in kinds:
            raise UnknownField(name, number, path)
        values[number] = _scalar(kinds[number], wire, raw, f"field {number} of {name}")
    return values


def _time(data: bytes, path: str, micro: bool) -> str | None:
    name = "MicroTime" if micro else "Time"
    v = _small_message(data, {1: "int64", 2: "int32"}, name, path)
    seconds, nanos = v.get(1, 0), v.get(2, 0)
    if not seconds and not nanos:
        return None
    try:
        t = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise DecodeError(f"{name} out of range at {path}") from None
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")  # Go's metav1.Time is RFC 3339 to the second


def _special(kind: str, data: bytes, path: str) -> Any:
    if kind in ("Time", "MicroTime"):
        return _time(data, path, kind == "MicroTime")
    if kind == "Quantity":
        return _small_message(data, {1: "string"}, kind, path).get(1) or "0"
    v = _small_message(data, {1: "int64", 2: "int32", 3: "string"}, kind, path)
    return v.get(3, "") if v.get(1, 0) == 1 else v.get(2, 0)


def _is_zero(value: Any) -> bool:
    return value is None or value == 0 or value == "" or value == b"" or value is False


def _json_scalar(value: Any) -> Any:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def decode(schema: Schema, message: str, data: bytes, path: str = "") -> dict[str, Any]:
    """Decode `data` as `message` into the JSON object Go would encode for it."""
    fields = schema.get(message)
    if fields is None:
        raise UnknownField(message, 0, path)
    out: dict[str, Any] = {}
    for number, wire, raw in iter_fields(data):
        f = fields.get(number)
        if f is None:
            raise UnknownField(message, number, path)
        where = f"{path}.{f.name}" if path else f.name
        if f.map:
            if wire != LEN or not isinstance(raw, bytes):
                raise DecodeError(f"{where}: a map entry must be length-delimited")
            key, value = _map_entry(schema, f, raw, where)
            out.setdefault(f.name, {})[key] = value
            continue
        if f.repeated and f.type in SCALARS and wire == LEN and SCALARS[f.type] != LEN:
            assert isinstance(raw, bytes)
            out.setdefault(f.name, []).extend(_packed(f.type, raw, where))
            continue
        if f.repeated:
            item = _value(schema, f, wire, raw, f"{where}[{len(out.get(f.name, []))}]")
            out.setdefault(f.name, []).append(_json_scalar(item))
            continue
        value = _value(schema, f, wire, raw, where)
        if f.inline:
            out.update(value)
        elif f.type in SCALARS or f.type in ("IntOrString", "Quantity"):
            if f.pointer or not _is_zero(value):
                out[f.name] = _json_scalar(value)
            else:
                out.pop(f.name, None)
        elif f.type in ("Time", "MicroTime"):
            if value is not None or not f.pointer:
                out[f.name] = value
        elif isinstance(value, dict) and isinstance(out.get(f.name), dict):
            out[f.name].update(value)  # a message seen twice is merged, as proto2 says
        else:
            out[f.name] = value
    return out


def _value(schema: Schema, f: Field, wire: int, raw: int | bytes, where: str) -> Any:
    if f.type in SCALARS:
        return _scalar(f.type, wire, raw, where)
    if wire != LEN or not isinstance(raw, bytes):
        raise DecodeError(f"{where} is {_WIRE_NAMES.get(wire, wire)}, expected a message")
    if f.type in SPECIAL:
        return _special(f.type, raw, where)
    return decode(schema, f.type, raw, where)


def _map_entry(schema: Schema, f: Field, data: bytes, where: str) -> tuple[str, Any]:
    key, value = "", None
    for number, wire, raw in iter_fields(data):
        if number == 1:
            key = _scalar("string", wire, raw, f"{where} key")
        elif number == 2:
            value = _value(schema, Field(f.name, f.type), wire, raw, f"{where}[{key}]")
        else:
            raise UnknownField(f"{where} map entry", number, where)
    if value is None:  # an absent value is the zero value of its type
        value = {"string": "", "bytes": b"", "Quantity": "0"}.get(f.type, {})
    return key, _json_scalar(value)
