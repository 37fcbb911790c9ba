"""wg-demo-greet: the smallest possible pure-Python package, a leaf of the demo graph."""

from setuptools import setup

setup(
    name="wg-demo-greet",
    version="1.0.0",
    description="wheelgraph demo: a pure-Python package with no dependencies",
    packages=["greet"],
    python_requires=">=3.8",
)
