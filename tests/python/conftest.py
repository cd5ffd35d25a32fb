"""Makes `import tandem` work from a build tree: $TANDEM_PYTHON_PATH (set by ctest), else the first
of build/python, build-py/python, build-*/python under the repository that holds the module, else
an installed package."""
import glob
import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(ROOT, "models")
EXAMPLE_DIR = os.path.join(ROOT, "examples", "parallel_sd_unet")


def _module_path():
    env = os.environ.get("TANDEM_PYTHON_PATH")
    if env:
        return env
    candidates = [os.path.join(ROOT, "build", "python"), os.path.join(ROOT, "build-py", "python")]
    candidates += sorted(glob.glob(os.path.join(ROOT, "build-*", "python")))
    for c in candidates:
        if glob.glob(os.path.join(c, "tandem", "_tandem*.so")):
            return c
    return None


PYTHON_PATH = _module_path()
if PYTHON_PATH:
    sys.path.insert(0, PYTHON_PATH)
    # Worker processes: the build tree's bin/tandem, beside python/.
    worker = os.path.join(os.path.dirname(PYTHON_PATH), "bin", "tandem")
    if "TANDEM_WORKER_BINARY" not in os.environ and os.access(worker, os.X_OK):
        os.environ["TANDEM_WORKER_BINARY"] = worker


def model(name):
    return os.path.join(MODELS, name, "model.onnx")


@pytest.fixture
def subprocess_env():
    """Environment for child Python processes (examples): the module on PYTHONPATH."""
    env = dict(os.environ)
    parts = [p for p in (PYTHON_PATH, EXAMPLE_DIR, env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env
