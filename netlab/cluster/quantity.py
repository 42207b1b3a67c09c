"""Kubernetes resource quantities (`100m`, `1.5`, `512Mi`, `1e3`, `2G`) as exact numbers.

The scheduler compares requests with allocatable in the units upstream uses internally:
millicores for cpu, bytes for memory, plain counts for everything else, each rounded **up**
as `resource.Quantity.MilliValue()` / `Value()` do. Parsing is exact (`fractions.Fraction`),
so `0.1` cpu is 100m, never 99.99...m. Written here because the one PyPI implementation
(the official client's `parse_quantity`) comes with the whole `kubernetes` package.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)


def parse(value: Any) -> Fraction:
    """The quantity as an exact number; ValueError names the bad text."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return Fraction(value)
    text = str(value).strip()
    m = _RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a quantity (such as 100m, 1, 128Mi)")
    number = Fraction(m.group("num"))
    if m.group("exp"):
        return number * Fraction(10) ** int(m.group("exp")[1:])
    suffix = m.group("suffix") or ""
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def milli(value: Any) -> int:
    """Millicores (cpu): `0.5` -> 500, `100m` -> 100, rounded up like `MilliValue()`."""
    return math.ceil(parse(value) * 1000)


def whole(value: Any) -> int:
    """Bytes or counts: `512Mi` -> 536870912, rounded up like `Value()`."""
    return math.ceil(parse(value))
