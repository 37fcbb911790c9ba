"""wg-demo-fastmath: a C extension that ships a C header, and links a CUDA object when asked.

Build-time env:
  FASTMATH_CUDA=1  compile src/kernels.cu with nvcc and link it into fastmath._core
                   (backend() then returns "cuda").
  CUDA_HOME        the CUDA toolkit root (bin/nvcc, lib64/libcudart_static.a); needed with FASTMATH_CUDA=1.
"""

import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

INCLUDE = os.path.join("fastmath", "include")
WITH_CUDA = os.environ.get("FASTMATH_CUDA", "") == "1"


class BuildExtWithCuda(build_ext):
    """build_ext that, with FASTMATH_CUDA=1, first compiles src/kernels.cu with nvcc and links the object in."""

    def build_extension(self, ext):
        if WITH_CUDA and ext.name == "fastmath._core":
            cuda_home = os.environ.get("CUDA_HOME", "")
            nvcc = os.path.join(cuda_home, "bin", "nvcc")
            if not cuda_home or not os.access(nvcc, os.X_OK):
                raise SystemExit(
                    "fastmath: FASTMATH_CUDA=1 needs nvcc, but "
                    + (f"{nvcc} is missing or not executable" if cuda_home else "CUDA_HOME is not set")
                    + "; set CUDA_HOME to a CUDA toolkit root (with bin/nvcc), or unset FASTMATH_CUDA for a cpu build"
                )
            os.makedirs(self.build_temp, exist_ok=True)
            obj = os.path.join(self.build_temp, "kernels.o")
            # -objtemp: intermediates named after the object, not tmpxft_<pid>_..., so kernels.o is deterministic.
            cmd = [nvcc, "-c", "-O2", "-objtemp", "-Xcompiler", "-fPIC", "-I", INCLUDE]
            cmd += [os.path.join("src", "kernels.cu"), "-o", obj]
            print("fastmath: " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            ext.extra_objects.append(obj)
            ext.define_macros.append(("FM_WITH_CUDA", "1"))
            ext.library_dirs.append(os.path.join(cuda_home, "lib64"))
            # nvcc's host stubs are C++ (__gxx_personality_v0, __cxa_guard_*), and setuptools links with gcc: add stdc++.
            ext.libraries.extend(["cudart_static", "dl", "rt", "pthread", "stdc++"])
        super().build_extension(ext)


setup(
    name="wg-demo-fastmath",
    version="1.0.0",
    description="wheelgraph demo: a C extension with an optional CUDA backend and a public C header",
    packages=["fastmath"],
    package_data={"fastmath": ["include/*.h"]},
    ext_modules=[
        Extension(
            "fastmath._core",
            sources=[os.path.join("src", "_core.c")],
            include_dirs=[INCLUDE],
            # No debug info, so no build paths in the .so: the wheel is byte-identical wherever it is built.
            extra_compile_args=["-g0"],
        )
    ],
    cmdclass={"build_ext": BuildExtWithCuda},
    python_requires=">=3.8",
    zip_safe=False,
)
