"""vecstats: small vector statistics; needs fastmath both to build (its C header) and to run (fastmath.dot)."""

import math

import fastmath

from ._vecstats import fastmath_header_version, total

__version__ = "1.0.0"
__all__ = ["fastmath_header_version", "mean", "norm"]


def mean(xs) -> float:
    """The arithmetic mean of a non-empty sequence of numbers (summed in C via fastmath.h's fm_scale)."""
    xs = list(xs)
    if not xs:
        raise ValueError("mean: empty sequence")
    return total(xs) / len(xs)


def norm(xs) -> float:
    """The Euclidean norm of a sequence of numbers, via fastmath.dot: norm([3, 4]) == 5.0."""
    xs = list(xs)
    return math.sqrt(fastmath.dot(xs, xs))
