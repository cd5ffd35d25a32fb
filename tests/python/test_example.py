"""The seed's example (examples/parallel_sd_unet) end to end on the flagship, and its bad use."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLE_DIR, model

SEED_LINES = ["Success to build model 0", "Success to build model 1", "Total predict time = ",
              "Receive exit message  and start to exit", "=========== success ==========="]


def run(script, env, *args):
    return subprocess.run([sys.executable, os.path.join(EXAMPLE_DIR, script), *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_seed_port_main(subprocess_env):
    r = run("main.py", subprocess_env)
    assert r.returncode == 0, r.stdout + r.stderr
    for line in SEED_LINES:
        assert line in r.stdout, r.stdout
    assert r.stdout.count("Receive exit message  and start to exit") == 2
    assert "max abs difference vs one batch-2 run" in r.stdout


def test_parallel_predictor_script(subprocess_env):
    r = run("parallel_predictor.py", subprocess_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "=========== success ===========" in r.stdout
    assert "Total predict time = " in r.stdout


@pytest.fixture
def utils_module():
    sys.path.insert(0, EXAMPLE_DIR)
    try:
        import parallel_predict_utils  # pylint: disable=import-outside-toplevel
        yield parallel_predict_utils
    finally:
        sys.path.remove(EXAMPLE_DIR)


def test_seed_port_build_failure_is_an_exception(utils_module, tmp_path):
    utils = utils_module.ParallelPredictUtils(str(tmp_path / "missing.onnx"), 2, timeout=60)
    with pytest.raises(RuntimeError, match="Failed to build model 0.*missing.onnx"):
        utils.build_model()
    assert utils.process == []


def test_seed_port_worker_exception_is_an_exception(utils_module):
    utils = utils_module.ParallelPredictUtils(model("resnet_tiny"), 2, timeout=60)
    utils.build_model()
    try:
        good = np.zeros((1, 3, 64, 64), np.float32)
        bad = np.zeros((1, 3, 64, 64), np.float64)  # wrong dtype in worker 1
        with pytest.raises(RuntimeError, match="device 1: InvalidArgumentError.*float64"):
            utils.predict([[good], [bad]])
        result = utils.predict([[good], [good]])  # no stale answers left behind
        assert len(result) == 2 and result[0][0].shape == (1, 10)
    finally:
        utils.finalize()
