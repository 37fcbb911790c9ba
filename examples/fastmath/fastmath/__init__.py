"""fastmath: a C extension (optionally with a CUDA object linked in) for wheelgraph's demo.

It also ships a C header, ``fastmath.h``, for other packages to compile against;
``get_include()`` returns the folder that holds it, like ``numpy.get_include()``.
"""

import os

from ._core import backend, cuda_device_count, dot, patch_level

__version__ = "1.0.0"
__all__ = ["backend", "cuda_device_count", "dot", "get_include", "patch_level"]


def get_include() -> str:
    """Return the folder holding ``fastmath.h``, for use as an include dir."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
