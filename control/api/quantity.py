"""Kubernetes resource quantities ("500m", "1.5", "128Mi", "1G", "2e3").

Shared by the scheduler (requests against allocatable) and the kubelet
(Docker limits, allocatable, resourceFieldRef): cpu in millicores and
everything else in whole units (bytes, pods), rounding up as
`resource.Quantity.MilliValue()` / `Value()` do.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_QUANTITY_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a quantity; ValueError naming the bad text otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"invalid quantity {text!r}")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(str(text))
    match = _QUANTITY_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"invalid quantity {text!r}: expected a number with an optional suffix like 500m, 128Mi or 1G")
    number, exponent, suffix = match.groups()
    value = Fraction(number)
    if exponent:
        return value * Fraction(10) ** int(exponent[1:])
    return value * _SUFFIXES[suffix or ""]


def milli_value(text: str | int | float) -> int:
    """Thousandths, rounded up (cpu "250m" -> 250, "1" -> 1000)."""
    return math.ceil(parse_quantity(text) * 1000)


def whole_value(text: str | int | float) -> int:
    """Whole units, rounded up (memory "1Ki" -> 1024, pods "110" -> 110)."""
    return math.ceil(parse_quantity(text))
