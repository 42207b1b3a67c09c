from fractions import Fraction

import pytest

from netlab.cluster import quantity


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("100m", 100),
        ("0.1", 100),
        ("1", 1000),
        ("2", 2000),
        ("1.5", 1500),
        (".5", 500),
        ("250u", 1),
        ("1e3", 1_000_000),
        ("3", 3000),
        (2, 2000),
    ],
)
def test_cpu_in_millicores(text: object, millis: int) -> None:
    assert quantity.milli(text) == millis


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512Mi", 512 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("1k", 1000),
        ("1Ki", 1024),
        ("110", 110),
        ("1.5Gi", 3 * 2**29),
        ("100m", 1),
        ("1E", 10**18),
        ("1Ei", 2**60),
        ("12e2", 1200),
    ],
)
def test_whole_units_round_up(text: str, value: int) -> None:
    assert quantity.whole(text) == value


def test_exact_arithmetic() -> None:
    assert quantity.parse("0.1") * 3 == Fraction(3, 10)


@pytest.mark.parametrize("bad", ["", "abc", "1Mb", "1 Gi", "--1", None, True, [1]])
def test_bad_quantities_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        quantity.parse(bad)
