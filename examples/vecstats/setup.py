"""wg-demo-vecstats: a C extension compiled against fastmath's header, so fastmath is needed to build it.

fastmath must be importable when this runs (installed in the build venv, no build isolation):
its get_include() supplies the folder holding fastmath.h.
"""

from setuptools import Extension, setup

try:
    import fastmath
except ImportError as e:
    raise SystemExit(
        "vecstats: building needs wg-demo-fastmath installed in the build environment "
        f"(for fastmath.get_include()); import failed: {e}"
    )

setup(
    name="wg-demo-vecstats",
    version="1.0.0",
    description="wheelgraph demo: a C extension that builds against, and imports, wg-demo-fastmath",
    packages=["vecstats"],
    ext_modules=[
        Extension(
            "vecstats._vecstats",
            sources=["vecstats/_vecstats.c"],
            include_dirs=[fastmath.get_include()],
            # No debug info, so no build paths in the .so: the wheel is byte-identical wherever it is built.
            extra_compile_args=["-g0"],
        )
    ],
    install_requires=["wg-demo-fastmath"],
    python_requires=">=3.8",
    zip_safe=False,
)
