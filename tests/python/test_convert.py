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


def worker_command_lines(p):
    lines = []
    for d in p.stats()["devices"]:
        with open(f"/proc/{d['pid']}/cmdline", "rb") as f:
            lines.append(f.read().split(b"\0"))
    return lines


def test_convert_once_and_verify_checksum_from_python(converted, tmp_path):
    x = np.random.default_rng(9).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    want = predict(RESNET, x)
    # Default: the .onnx is converted once; the workers map the memfd, named beside --source.
    with tandem.ParallelPredictor(RESNET, devices=2) as p:
        assert all(b"--source" in c for c in worker_command_lines(p))
        np.testing.assert_array_equal(p.predict([x])[0], want)
    with tandem.ParallelPredictor(RESNET, devices=2, convert_once=False) as p:
        assert not any(b"--source" in c for c in worker_command_lines(p))
        np.testing.assert_array_equal(p.predict([x])[0], want)
    # verify_checksum=False: a damaged file is loaded as it is, by Model and by the predictor.
    bad = tmp_path / "bad.tandem"
    data = bytearray(open(converted, "rb").read())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    ctx = tandem.Context()
    ctx.verify_checksum = False
    m = tandem.Model()
    m.build_from_file(str(bad), tandem.ModelType.ONNX, ctx)
    with tandem.ParallelPredictor(str(bad), devices=2, verify_checksum=False) as p:
        assert p.predict([x])[0].shape == want.shape
