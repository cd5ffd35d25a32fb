"""tandem.ParallelPredictor: equivalence with one device, futures, context manager, bad use."""
import numpy as np
import pytest

import tandem
from conftest import model

RESNET = model("resnet_tiny")
BERT = model("bert_tiny")


def single(path, inputs):
    m = tandem.Model()
    m.build_from_file(path, tandem.ModelType.ONNX, tandem.Context())
    return [t.get_data_to_numpy() for t in m.predict(inputs)]


@pytest.fixture(scope="module")
def predictor():
    with tandem.ParallelPredictor(RESNET, devices="cpu:0,cpu:1") as p:
        yield p


@pytest.mark.parametrize("devices,expected", [
    ("cpu:0,cpu:1", ["cpu:0", "cpu:1"]), (["cpu:0", "cpu:1"], ["cpu:0", "cpu:1"]),
    (2, ["cpu:0", "cpu:1"]), ("1", ["cpu:0"]),
])
def test_device_forms(devices, expected):
    assert tandem.ParallelPredictor(RESNET, devices).devices == expected


def test_predict_equals_one_device(predictor):
    x = np.random.default_rng(0).standard_normal((5, 3, 64, 64), dtype=np.float32)  # remainder
    out = predictor.predict([x])
    assert isinstance(out[0], np.ndarray) and out[0].shape == (5, 10)
    np.testing.assert_allclose(out[0], single(RESNET, [x])[0], atol=1e-5)
    assert [t.name for t in predictor.get_inputs()] == ["input"]
    assert [t.name for t in predictor.get_outputs()] == ["logits"]
    s = predictor.stats()
    assert s["requests"] >= 1 and len(s["devices"]) == 2
    # The fault policy's state per worker (issue 10): every worker built and serving.
    for d in s["devices"]:
        assert d["state"] == "up" and d["up"] and d["restarts_in_window"] == 0
        assert d["next_start_s"] == -1


def test_submit_futures(predictor):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 3, 64, 64), dtype=np.float32) for _ in range(4)]
    futures = [predictor.submit([x]) for x in xs]
    for f, x in zip(futures, xs):
        out = f.result(timeout=60)
        assert f.done() and f.exception() is None
        np.testing.assert_allclose(out[0], single(RESNET, [x])[0], atol=1e-5)


def test_submit_copies_inputs(predictor):
    x = np.ones((2, 3, 64, 64), np.float32)
    expected = predictor.predict([x])[0]
    f = predictor.submit([x])
    x[:] = 0
    np.testing.assert_array_equal(f.result(60)[0], expected)


def test_threads_mode():
    x = np.random.default_rng(2).standard_normal((3, 3, 64, 64), dtype=np.float32)
    with tandem.ParallelPredictor(RESNET, 2, mode="threads") as p:
        np.testing.assert_allclose(p.predict({"input": x})[0], single(RESNET, [x])[0], atol=1e-5)


def test_bad_options_and_files(tmp_path):
    with pytest.raises(ValueError):
        tandem.ParallelPredictor(RESNET, "")
    with pytest.raises(ValueError, match="strings"):
        tandem.ParallelPredictor(RESNET, [0, 1])
    with pytest.raises(tandem.TandemError, match="gpu0"):  # names are checked by build()
        tandem.ParallelPredictor(RESNET, "gpu0,cpu:1").build()
    with pytest.raises(ValueError):
        tandem.ParallelPredictor(RESNET, 0)
    with pytest.raises(ValueError, match="mode"):
        tandem.ParallelPredictor(RESNET, 1, mode="fibers")
    p = tandem.ParallelPredictor(str(tmp_path / "missing.onnx"), 1)
    with pytest.raises(FileNotFoundError):
        p.build()
    # a worker that dies while building: the failure names each device, no hang
    p = tandem.ParallelPredictor(RESNET, 2, worker_binary="/bin/false", build_timeout=30)
    with pytest.raises(tandem.TandemError, match="cpu:1.*exited"):
        p.build()


def test_predict_before_build_and_after_finalize():
    x = np.zeros((2, 3, 64, 64), np.float32)
    p = tandem.ParallelPredictor(RESNET, 2)
    with pytest.raises(ValueError, match="build"):
        p.predict([x])
    with pytest.raises(ValueError, match="build"):
        p.submit([x])
    p.build()
    assert p.predict([x])[0].shape == (2, 10)
    p.finalize()
    p.finalize()  # idempotent
    with pytest.raises(ValueError, match="finalized"):
        p.predict([x])
    with pytest.raises(ValueError, match="finalized"):
        p.submit([x])


def test_wrong_inputs(predictor):
    with pytest.raises(ValueError, match="float64"):
        predictor.predict([np.zeros((2, 3, 64, 64), np.float64)])
    with pytest.raises(ValueError):
        predictor.predict([np.zeros((2, 3, 32, 64), np.float32)])
    with pytest.raises(TypeError):
        predictor.predict("input")
    # the predictor still works after refusing bad requests
    assert predictor.predict([np.zeros((1, 3, 64, 64), np.float32)])[0].shape == (1, 10)


def test_exception_raised_in_a_worker():
    ids = np.ones((4, 8), np.int64)
    bad = ids.copy()
    bad[3, 0] = 5000  # out of the 1000-word vocabulary: the worker's Gather fails
    mask = np.ones((4, 8), np.int64)
    with tandem.ParallelPredictor(BERT, 2, deadline=60) as p:
        with pytest.raises(tandem.TandemError, match="out of range"):
            p.predict([bad, mask])
        f = p.submit([bad, mask])
        assert isinstance(f.exception(timeout=60), tandem.TandemError)
        with pytest.raises(tandem.TandemError):
            f.result()
        out = p.predict([ids, mask])  # no stale replies: the next request is answered right
        np.testing.assert_allclose(out[0], single(BERT, [ids, mask])[0], atol=1e-5)


def readonly_copies(x):
    a = np.frombuffer(x.tobytes(), dtype=x.dtype).reshape(x.shape)
    b = x.copy()
    b.setflags(write=False)
    for arr in (a, b):
        assert not arr.flags.writeable
    return [a, b]


def test_read_only_arrays_are_accepted(predictor):
    x = np.random.default_rng(4).standard_normal((3, 3, 64, 64), dtype=np.float32)
    expected = single(RESNET, [x])[0]
    for arr in readonly_copies(x):
        np.testing.assert_allclose(predictor.predict([arr])[0], expected, atol=1e-5)
        np.testing.assert_allclose(predictor.predict({"input": arr})[0], expected, atol=1e-5)
        np.testing.assert_allclose(predictor.submit([arr]).result(60)[0], expected, atol=1e-5)
        np.testing.assert_allclose(predictor.predict([tandem.Tensor(arr)])[0], expected,
                                   atol=1e-5)
        np.testing.assert_array_equal(arr, x)


def test_read_only_arrays_threads_mode():
    x = np.random.default_rng(5).standard_normal((3, 3, 64, 64), dtype=np.float32)
    expected = single(RESNET, [x])[0]
    with tandem.ParallelPredictor(RESNET, 2, mode="threads") as p:
        for arr in readonly_copies(x):
            np.testing.assert_allclose(p.predict([arr])[0], expected, atol=1e-5)
            np.testing.assert_allclose(p.submit([arr]).result(60)[0], expected, atol=1e-5)


def test_build_twice_is_a_no_op():
    x = np.zeros((2, 3, 64, 64), np.float32)
    with tandem.ParallelPredictor(RESNET, 2) as p:
        pids = sorted(d["pid"] for d in p.stats()["devices"])
        p.build()  # already built on entering: nothing to do
        p.build()
        assert p.built
        assert sorted(d["pid"] for d in p.stats()["devices"]) == pids  # no new workers
        assert p.predict([x])[0].shape == (2, 10)
    with pytest.raises(ValueError, match="finalize"):  # a finalized predictor stays finalized
        p.build()
    p = tandem.ParallelPredictor(RESNET, 2)
    p.build()
    p.build()
    assert p.predict([x])[0].shape == (2, 10)
    p.finalize()


def test_build_from_two_threads_at_once():
    import threading
    p = tandem.ParallelPredictor(RESNET, 2)
    errors = []

    def build():
        try:
            p.build()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(p.stats()["devices"]) == 2
    assert p.predict([np.zeros((2, 3, 64, 64), np.float32)])[0].shape == (2, 10)
    p.finalize()


def test_fault_policy_options():
    """The fault policy's times reach the runner: with max_restarts=0 one kill marks the device
    down at once, and a probe_interval of 0.2 s brings it back well before the 5 s default."""
    import os
    import signal
    import time
    for bad in (dict(restart_window=-1), dict(probe_interval=float("nan")),
                dict(max_probe_interval=1e9)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            tandem.ParallelPredictor(RESNET, 1, **bad)
    with pytest.raises(ValueError, match="max_probe_interval"):  # below probe_interval
        tandem.ParallelPredictor(RESNET, 1, probe_interval=2, max_probe_interval=1)
    x = np.ones((2, 3, 64, 64), np.float32)
    with tandem.ParallelPredictor(RESNET, "cpu:0,cpu:1", max_restarts=0, restart_window=60,
                                  probe_interval=0.2, max_probe_interval=0.4) as p:
        expected = p.predict([x])[0]
        os.kill(p.stats()["devices"][0]["pid"], signal.SIGKILL)
        states, deadline = [], time.monotonic() + 20
        while time.monotonic() < deadline:
            d = p.stats()["devices"][0]
            states.append(d["state"])
            if d["state"] == "up" and d["restarts"] >= 1:
                break
            time.sleep(0.01)
        assert "down" in states, states[:20]
        assert states[-1] == "up", states[-20:]
        np.testing.assert_allclose(p.predict([x])[0], expected, atol=1e-5)
