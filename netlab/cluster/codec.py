"""JSON for the apiserver's hot path: orjson where it can, the standard library where it cannot.

Every API call decodes a body, encodes the object for etcd, decodes etcd's answer and encodes
the response, and every watch event is decoded once and encoded once for all its watchers. With
the standard `json` module that was about a tenth of the apiserver's CPU under load; orjson (a
maintained C-backed library) does the same work several times faster. Its output is compact
UTF-8 JSON, as `json.dumps(separators=(",", ":"))` would give except that non-ASCII characters
are not escaped, which is still the same JSON.

orjson is stricter in two corners, and there the standard library takes over: integers
beyond 64 bits are encoded by `json` (orjson refuses them), and input that is not valid JSON,
or is JSON only `json` accepts (NaN), is parsed or rejected by `json` with the error message
clients saw before. Decoding, a number beyond 64 bits becomes a float, as it does in
upstream's unstructured JSON (int64, else float64). Non-string keys (YAML bodies can have
them) are turned into strings, as `json` does.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
