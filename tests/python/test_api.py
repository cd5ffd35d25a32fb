"""The MindSpore Lite-style API surface: Context, Model, Tensor, dtypes, errors, GIL release."""
import glob
import os
import threading
import time

import numpy as np
import pytest
from onnx import numpy_helper
import onnx

import tandem
from conftest import MODELS, model

RESNET = model("resnet_tiny")


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


@pytest.fixture(scope="module")
def resnet():
    ctx = tandem.Context()
    ctx.target = ["cpu"]
    ctx.cpu.thread_num = 2
    m = tandem.Model()
    m.build_from_file(RESNET, tandem.ModelType.ONNX, ctx)
    return m


def test_context_fields():
    ctx = tandem.Context()
    assert ctx.target == ["cpu"]
    ctx.cpu.thread_num = 2
    ctx.cpu.core_list = [0, 1]
    assert ctx.cpu.thread_num == 2 and ctx.cpu.core_list == [0, 1]
    assert ctx.cpu.thread_affinity_core_list == [0, 1]
    ctx.target = ["cuda"]
    ctx.cuda.device_id = 1
    assert ctx.target == ["cuda"] and ctx.gpu.device_id == 1
    with pytest.raises(ValueError, match="ascend"):
        ctx.target = ["ascend"]
    with pytest.raises(ValueError):
        ctx.cpu.thread_num = -1


def test_cuda_target_is_a_clear_error():
    ctx = tandem.Context()
    ctx.target = ["cuda"]
    with pytest.raises(tandem.UnsupportedError, match="CUDA"):
        tandem.Model().build_from_file(RESNET, tandem.ModelType.ONNX, ctx)


def test_seed_flow_matches_reference_data(resnet):
    for case in sorted(glob.glob(os.path.join(MODELS, "resnet_tiny", "test_data_set_*"))):
        x = load_pb(os.path.join(case, "input_0.pb"))
        expected = load_pb(os.path.join(case, "output_0.pb"))
        inputs = resnet.get_inputs()
        assert [t.name for t in inputs] == ["input"]
        inputs[0].set_data_from_numpy(x)
        outputs = resnet.predict(inputs)
        assert isinstance(outputs[0], tandem.Tensor)
        got = outputs[0].get_data_to_numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert resnet.get_outputs()[0].shape == list(expected.shape)


def test_tensor_properties(resnet):
    t = resnet.get_inputs()[0]
    assert t.name == "input" and t.dtype == tandem.DataType.FLOAT32
    assert t.shape == [-1, 3, 64, 64] and t.element_num == -1 and not t.has_data
    with pytest.raises(ValueError, match="no data"):
        t.get_data_to_numpy()
    t.set_data_from_numpy(np.zeros((2, 3, 64, 64), np.float32))
    assert t.shape == [2, 3, 64, 64]
    assert t.element_num == 2 * 3 * 64 * 64 and t.data_size == 4 * t.element_num
    assert t.dtype.numpy == np.float32


def test_predict_accepts_arrays_and_dicts(resnet):
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64), dtype=np.float32)
    a = resnet.predict([x])[0].get_data_to_numpy()
    b = resnet.predict({"input": x})[0].get_data_to_numpy()
    c = resnet.predict([tandem.Tensor(x)])[0].get_data_to_numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_non_contiguous_inputs(resnet):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 64, 64), dtype=np.float32)
    expected = resnet.predict([x])[0].get_data_to_numpy()
    transposed = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    strided = np.repeat(x, 2, axis=3)[..., ::2]
    big_endian = x.astype(">f4")
    for arr in (transposed, strided, big_endian):
        assert not (arr.flags.c_contiguous and arr.dtype.isnative)
        np.testing.assert_array_equal(resnet.predict([arr])[0].get_data_to_numpy(), expected)
        t = resnet.get_inputs()[0]
        t.set_data_from_numpy(arr)
        np.testing.assert_array_equal(t.get_data_to_numpy(), x)
        np.testing.assert_array_equal(resnet.predict([t])[0].get_data_to_numpy(), expected)


def test_outputs_are_zero_copy_views(resnet):
    out = resnet.predict([np.zeros((1, 3, 64, 64), np.float32)])[0]
    a, b = out.get_data_to_numpy(), out.get_data_to_numpy()
    assert np.shares_memory(a, b)
    assert type(a.base).__name__ == "PyCapsule"
    del out  # the view keeps the buffer alive
    assert np.isfinite(a).all()


def test_set_data_copies(resnet):
    x = np.ones((1, 3, 64, 64), np.float32)
    t = resnet.get_inputs()[0]
    t.set_data_from_numpy(x)
    x[:] = 7
    assert (t.get_data_to_numpy() == 1).all()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int8", "int16", "int32",
                                   "int64", "uint8", "uint16", "uint32", "uint64", "bool"])
def test_dtype_round_trip(dtype):
    x = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    t = tandem.Tensor(x, name="x")
    assert t.dtype.numpy == np.dtype(dtype)
    assert tandem.DataType.from_numpy(dtype) == t.dtype
    y = t.get_data_to_numpy()
    assert y.dtype == np.dtype(dtype) and y.shape == x.shape
    np.testing.assert_array_equal(y, x)


def test_resize_fixes_shapes(resnet):
    m = tandem.Model()
    m.build_from_file(RESNET, tandem.ModelType.ONNX, tandem.Context())
    inputs = m.get_inputs()
    m.resize(inputs, [[2, 3, 64, 64]])
    t = m.get_inputs()[0]
    assert t.shape == [2, 3, 64, 64]
    with pytest.raises(ValueError, match="shape differs"):
        t.set_data_from_numpy(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError):
        m.resize(inputs, [[2, 3, 64, 64], [1]])


def test_bad_dtype_and_shape_say_what_differs(resnet):
    t = resnet.get_inputs()[0]
    with pytest.raises(ValueError, match=r"dtype differs: the tensor is float32, the array is float64"):
        t.set_data_from_numpy(np.zeros((1, 3, 64, 64), np.float64))
    with pytest.raises(tandem.InvalidArgumentError, match=r"shape differs.*\[3,64,64\]"):
        t.set_data_from_numpy(np.zeros((3, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"dim 2 is 64 in the tensor, 32 in the array"):
        t.set_data_from_numpy(np.zeros((1, 3, 32, 64), np.float32))
    with pytest.raises(ValueError, match="float64"):
        resnet.predict([np.zeros((1, 3, 64, 64), np.float64)])
    with pytest.raises(ValueError):
        resnet.predict([np.zeros((1, 3, 32, 64), np.float32)])
    with pytest.raises(ValueError, match="no data"):
        resnet.predict(resnet.get_inputs())
    with pytest.raises(TypeError, match="list"):
        resnet.predict(np.zeros((1, 3, 64, 64), np.float32))  # not a list
    with pytest.raises(ValueError, match="not supported"):
        tandem.Tensor(np.zeros(3, np.complex64))
    with pytest.raises(TypeError):
        t.set_data_from_numpy([1.0, 2.0])  # a list is no ndarray


def test_errors_have_codes_and_builtin_bases(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        tandem.Model().build_from_file(str(tmp_path / "missing.onnx"), tandem.ModelType.ONNX)
    assert isinstance(info.value, tandem.TandemError) and isinstance(info.value, RuntimeError)
    assert info.value.code == "NOT_FOUND" and "missing.onnx" in str(info.value)
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(tandem.TandemError) as info:
        tandem.Model().build_from_file(str(bad), tandem.ModelType.ONNX)
    assert info.value.code == "INVALID_MODEL"
    with pytest.raises(NotImplementedError, match="MINDIR"):
        tandem.Model().build_from_file(RESNET, tandem.ModelType.MINDIR)


def test_predict_before_build():
    m = tandem.Model()
    with pytest.raises(ValueError, match="not built"):
        m.predict([np.zeros((1, 3, 64, 64), np.float32)])
    with pytest.raises(ValueError, match="not built"):
        m.get_inputs()


def test_runtime_error_in_kernel():
    m = tandem.Model()
    m.build_from_file(model("bert_tiny"), tandem.ModelType.ONNX)
    ids = np.full((1, 8), 5000, np.int64)  # vocabulary is 1000
    with pytest.raises(tandem.TandemError, match="out of range"):
        m.predict([ids, np.ones((1, 8), np.int64)])
    out = m.predict([np.ones((1, 8), np.int64), np.ones((1, 8), np.int64)])  # still usable
    assert out[0].shape == [1, 8, 64]


def test_predict_releases_the_gil():
    # The flagship at batch 4 takes tens of milliseconds; the main thread's loop takes a fraction
    # of one, so it ends first unless predict holds the GIL.
    m = tandem.Model()
    ctx = tandem.Context()
    ctx.cpu.thread_num = 1
    m.build_from_file(model("sd_unet_tiny"), tandem.ModelType.ONNX, ctx)
    inputs = [np.zeros((4, 4, 64, 64), np.float32), np.ones((1,), np.float32),
              np.zeros((4, 77, 1024), np.float32)]
    m.predict(inputs)
    done = {}
    started = threading.Event()

    def work():
        started.set()
        m.predict(inputs)
        done["predict"] = time.perf_counter()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    n = 0
    for n in range(2000):  # pure Python work while the other thread predicts
        pass
    done["python"] = time.perf_counter()
    worker.join()
    assert done["python"] < done["predict"], "the main thread could not run during predict"


def test_model_shared_by_threads(resnet):
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64), dtype=np.float32)
    expected = resnet.predict([x])[0].get_data_to_numpy().copy()
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        resnet.predict([x])[0].get_data_to_numpy())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, expected)


# Several threads predicting on one Model while others read last_stats() and get_outputs():
# predict rewrites both with the GIL released, so the readers must not see them half-written (a
# SIGSEGV before the fix). Run in a child process so that a crash fails this test, not the suite.
CONCURRENT_READERS = r"""
import sys, threading, time
import numpy as np
import tandem

path, seconds = sys.argv[1], float(sys.argv[2])
ctx = tandem.Context()
ctx.cpu.thread_num = 1
ctx.profile = True  # last_stats()['op_time_ms'] is a map predict rebuilds on every run
m = tandem.Model()
m.build_from_file(path, tandem.ModelType.ONNX, ctx)
rng = np.random.default_rng(0)
xs = [rng.standard_normal((b, 3, 64, 64), dtype=np.float32) for b in (1, 2, 1)]
refs = [m.predict([x])[0].get_data_to_numpy().copy() for x in xs]
deadline = time.monotonic() + seconds
failures, counts = [], {"predict": 0, "stats": 0, "outputs": 0}
lock = threading.Lock()

def bump(key):
    with lock:
        counts[key] += 1

def predictor(k):
    try:
        while time.monotonic() < deadline:
            out = m.predict([xs[k]])[0].get_data_to_numpy()
            np.testing.assert_allclose(out, refs[k], atol=1e-5)
            bump("predict")
    except Exception as e:
        failures.append(repr(e))

def reader():
    try:
        while time.monotonic() < deadline:
            s = m.last_stats()
            assert s["num_steps"] > 0 and s["predict_ms"] > 0 and len(s["op_time_ms"]) > 0, s
            bump("stats")
            out = m.get_outputs()
            assert [t.name for t in out] == ["logits"]
            a = out[0].get_data_to_numpy()
            assert any(a.shape == r.shape and np.allclose(a, r, atol=1e-5) for r in refs), a.shape
            bump("outputs")
    except Exception as e:
        failures.append(repr(e))

threads = [threading.Thread(target=predictor, args=(k,)) for k in range(3)]
threads += [threading.Thread(target=reader) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not failures, failures
assert min(counts.values()) > 10, counts
print("ok", counts)
"""


def test_concurrent_predict_and_state_readers(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "readers.py"
    script.write_text(CONCURRENT_READERS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, "-X", "faulthandler", str(script), RESNET, "4"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    assert r.stdout.startswith("ok")


def test_last_stats_and_outputs_are_snapshots(resnet):
    # What last_stats() and get_outputs() return stays as it was when later predicts run.
    x1 = np.zeros((1, 3, 64, 64), np.float32)
    x2 = np.ones((2, 3, 64, 64), np.float32)
    resnet.predict([x1])
    stats, outs = resnet.last_stats(), resnet.get_outputs()
    first = outs[0].get_data_to_numpy().copy()
    resnet.predict([x2])
    assert outs[0].shape == [1, 10]
    np.testing.assert_array_equal(outs[0].get_data_to_numpy(), first)
    assert resnet.get_outputs()[0].shape == [2, 10] and stats["num_steps"] > 0


def readonly_copies(x):
    """Read-only arrays with x's values: from bytes (np.frombuffer) and with setflags."""
    a = np.frombuffer(x.tobytes(), dtype=x.dtype).reshape(x.shape)
    b = x.copy()
    b.setflags(write=False)
    for arr in (a, b):
        assert not arr.flags.writeable
    return [a, b]


def test_read_only_arrays_are_accepted(resnet):
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64), dtype=np.float32)
    expected = resnet.predict([x])[0].get_data_to_numpy().copy()
    for arr in readonly_copies(x):
        np.testing.assert_array_equal(resnet.predict([arr])[0].get_data_to_numpy(), expected)
        np.testing.assert_array_equal(resnet.predict({"input": arr})[0].get_data_to_numpy(),
                                      expected)
        t = tandem.Tensor(arr)
        np.testing.assert_array_equal(resnet.predict([t])[0].get_data_to_numpy(), expected)
        t = resnet.get_inputs()[0]
        t.set_data_from_numpy(arr)
        np.testing.assert_array_equal(resnet.predict([t])[0].get_data_to_numpy(), expected)
        assert not arr.flags.writeable  # still read-only, and unchanged
        np.testing.assert_array_equal(arr, x)
    # onnx.numpy_helper.to_array of raw data gives a read-only view of the protobuf's bytes
    case = os.path.join(MODELS, "resnet_tiny", "test_data_set_0")
    x = load_pb(os.path.join(case, "input_0.pb"))
    got = resnet.predict([x])[0].get_data_to_numpy()
    np.testing.assert_allclose(got, load_pb(os.path.join(case, "output_0.pb")), atol=1e-4)
