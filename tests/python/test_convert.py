"""A .tandem file (`tandem convert`) is taken wherever an .onnx is: Model.build_from_file and
ParallelPredictor, with the same outputs."""
import os
import subprocess

import numpy as np
import pytest

import tandem
from conftest import model

RESNET = model("resnet_tiny")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    binary = os.environ.get("TANDEM_WORKER_BINARY")
    if not binary:
        pytest.skip("no tandem binary beside the module")
    out = str(tmp_path_factory.mktemp("convert") / "resnet.tandem")
    subprocess.run([binary, "convert", RESNET, "-o", out], check=True, capture_output=True)
    return out


def predict(path, x):
    m = tandem.Model()
    m.build_from_file(path, tandem.ModelType.ONNX, tandem.Context())
    return m.predict({"input": x})[0].get_data_to_numpy()


def test_model_from_tandem_equals_onnx(converted):
    x = np.random.default_rng(7).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(predict(converted, x), predict(RESNET, x))


def test_parallel_predictor_takes_tandem(converted):
    x = np.random.default_rng(8).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)
    with tandem.ParallelPredictor(converted, devices="cpu:0,cpu:1") as p:
        got = p.predict([x])[0]
    np.testing.assert_array_equal(got, predict(RESNET, x))


def test_damaged_tandem_is_a_clear_error(converted, tmp_path):
    bad = tmp_path / "bad.tandem"
    data = bytearray(open(converted, "rb").read())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(Exception, match="is corrupt: its checksum"):
        predict(str(bad), np.zeros((1, 3, 64, 64), np.float32))
