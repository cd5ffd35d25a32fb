"""Builds the `tandem` Python package with CMake: the extension tandem._tandem and the `tandem`
executable that ParallelPredictor's worker processes run (shipped as tandem/bin/tandem).

    /usr/bin/python3 -m pip install --no-build-isolation .

Environment:
    TANDEM_CMAKE_BUILD_DIR  CMake build folder to (re)use (default: build-pip in the source tree);
                            pointing it at an existing build (e.g. build) skips recompiling.
    TANDEM_BUILD_JOBS       parallel compile jobs (default: the CPU count)
"""
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.path.abspath(os.environ.get("TANDEM_CMAKE_BUILD_DIR")
                                    or os.path.join(ROOT, "build-pip"))
        jobs = os.environ.get("TANDEM_BUILD_JOBS") or str(os.cpu_count() or 1)
        if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            subprocess.check_call(
                ["cmake", "-S", ROOT, "-B", build_dir, *generator,
                 "-DCMAKE_BUILD_TYPE=Release", "-DTANDEM_BUILD_TESTS=OFF",
                 "-DTANDEM_BUILD_PYTHON=ON", f"-DPYTHON_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "_tandem", "tandem",
                               "--parallel", jobs])
        package_dir = os.path.join(build_dir, "python", "tandem")
        built = [f for f in os.listdir(package_dir)
                 if f.startswith("_tandem") and f.endswith(".so")]
        if not built:
            raise RuntimeError(f"CMake did not produce tandem/_tandem*.so in {package_dir}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(package_dir, built[0]), target)
        # The worker executable, found by tandem/__init__.py as tandem/bin/tandem.
        bin_dir = os.path.join(os.path.dirname(target), "bin")
        os.makedirs(bin_dir, exist_ok=True)
        shutil.copy2(os.path.join(build_dir, "bin", "tandem"), os.path.join(bin_dir, "tandem"))


setup(
    ext_modules=[Extension("tandem._tandem", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    # Keep setuptools' scratch files out of the source tree and out of build/.
    options={"build": {"build_base": os.path.join("build-pip", "setuptools")},
             "egg_info": {"egg_base": "build-pip"}},
    zip_safe=False,
)
