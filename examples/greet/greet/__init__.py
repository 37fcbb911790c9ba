"""greet: a pure-Python demo package for wheelgraph."""

__version__ = "1.0.0"


def hello(name: str) -> str:
    """Return a greeting for ``name``: ``hello("x") == "hello, x"``."""
    return f"hello, {name}"
