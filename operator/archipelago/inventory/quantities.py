"""Kubernetes resource quantities (``"64"``, ``"63500m"``, ``"512Gi"``, ``"1e9"``) as exact numbers.

The grammar is apimachinery's ``resource.Quantity``: a decimal number, then either a binary
suffix (Ki, Mi, Gi, Ti, Pi, Ei), a decimal suffix (n, u, m, k, M, G, T, P, E) or a decimal
exponent (``e9``, ``E-3``). Parsing is exact (``fractions.Fraction``); the conversions to the
core's units round *down* by default, so a node never appears to have more capacity than it
reports; pod requests round *up* (``up=True``), so a pod never gets less than it asked for.
"""

from __future__ import annotations

import fractions
import math
import re

_PATTERN = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_SUFFIXES: dict[str, fractions.Fraction] = {
    "": fractions.Fraction(1),
    **{s: fractions.Fraction(1024**k) for k, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
    **{s: fractions.Fraction(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6))},
    **{s: fractions.Fraction(10) ** e for s, e in (("G", 9), ("T", 12), ("P", 15), ("E", 18))},
}
MIB = 1024 * 1024
"""Bytes per MiB."""


def parse(text: object) -> fractions.Fraction:
    """The exact value of a quantity string; raises ``ValueError`` naming the text if it is not one.

    Plain JSON numbers (``8``) are accepted too, as the API server may hand them over that way.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    match = _PATTERN.match(str(text).strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, suffix = match.group(1), match.group(2) or ""
    value = fractions.Fraction(number)
    if suffix[:1] in ("e", "E") and suffix not in _SUFFIXES:
        return value * fractions.Fraction(10) ** int(suffix[1:])
    return value * _SUFFIXES[suffix]


def cpu_milli(text: object, *, up: bool = False) -> int:
    """Cpu in milli-cores, rounded down, or up with ``up`` (``"63500m"`` -> 63500, ``"2k"`` -> 2_000_000).

    Raises ``ValueError`` for text that is not a quantity or is negative.
    """
    return _non_negative(parse(text) * 1000, text, up)


def mebibytes(text: object, *, up: bool = False) -> int:
    """Bytes as whole MiB, rounded down, or up with ``up`` (``"512Gi"`` -> 524288, ``"128974848"`` -> 123).

    Raises ``ValueError`` for text that is not a quantity or is negative.
    """
    return _non_negative(parse(text) / MIB, text, up)


def count(text: object) -> int:
    """A whole count, such as an extended resource's capacity (``"8"``).

    Raises ``ValueError`` for text that is not a quantity, is negative or is not whole.
    """
    value = parse(text)
    if value.denominator != 1:
        raise ValueError(f"not a whole count: {text!r}")
    return _non_negative(value, text)


def _non_negative(value: fractions.Fraction, text: object, up: bool = False) -> int:
    if value < 0:
        raise ValueError(f"quantity must not be negative: {text!r}")
    return math.ceil(value) if up else int(value)  # int() truncates toward zero: rounds down here
