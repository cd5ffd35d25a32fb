"""`tandem map`: every item of a folder through a model, on one device, over --devices and over
an MPI job; each item's outputs equal one Model run on that item alone; a rerun skips what is
written; a broken item fails alone; the seed's UNet with its unbatched timestep in folder items."""
import os
import shutil
import subprocess

import numpy as np
import pytest
from onnx import numpy_helper

import tandem
from conftest import model

RESNET = model("resnet_tiny")
UNET = model("sd_unet_tiny")
BINARY = os.environ.get("TANDEM_WORKER_BINARY")
pytestmark = pytest.mark.skipif(not BINARY, reason="no tandem binary beside the module")
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_hwloc_base_binding_policy="none")


def one_model(path):
    m = tandem.Model()
    m.build_from_file(path, tandem.ModelType.ONNX, tandem.Context())
    return m


def run_map(args, env=None, mpi_ranks=0):
    cmd = [BINARY, "map"] + args
    if mpi_ranks:
        cmd = ["mpirun", "-np", str(mpi_ranks)] + cmd + ["--mpi"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def make_images(folder, rows):
    rng = np.random.default_rng(3)
    os.makedirs(folder)
    arrays = {}
    for i, r in enumerate(rows):
        x = rng.uniform(-1, 1, size=(r, 3, 64, 64)).astype(np.float32)
        name = f"img{i:02d}"
        if i % 2:
            with open(os.path.join(folder, name + ".pb"), "wb") as f:
                f.write(numpy_helper.from_array(x, "input").SerializeToString())
        else:
            np.save(os.path.join(folder, name + ".npy"), x)
        arrays[name] = x
    return arrays


def read_output(folder, name):
    npy = os.path.join(folder, name, "logits.npy")
    if os.path.exists(npy):
        return np.load(npy)
    with open(os.path.join(folder, name, "logits.pb"), "rb") as f:
        from onnx import TensorProto
        t = TensorProto()
        t.ParseFromString(f.read())
        return numpy_helper.to_array(t)


@pytest.mark.parametrize("where", ["one device", "devices", "mpi"])
def test_every_item_equals_one_model(tmp_path, where):
    if where == "mpi" and (not tandem._tandem._have_mpi or not shutil.which("mpirun")):
        pytest.skip("this build has no MPI")
    arrays = make_images(str(tmp_path / "in"), [1, 1, 3, 1, 2, 1, 1])
    out = str(tmp_path / "out")
    args = ["-m", RESNET, "--inputs", str(tmp_path / "in"), "--output-dir", out, "--batch", "3"]
    if where == "devices":
        args += ["--devices", "2"]
    r = run_map(args, env=MPI_ENV, mpi_ranks=2 if where == "mpi" else 0)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "7 written, 0 skipped" in r.stdout, r.stdout
    ref = one_model(RESNET)
    for name, x in arrays.items():
        want = ref.predict({"input": x})[0].get_data_to_numpy()
        got = read_output(out, name)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5, name
    assert sorted(os.listdir(out)) == sorted(arrays)  # no partial folders left behind


def test_rerun_skips_written_items_and_a_broken_item_fails_alone(tmp_path):
    arrays = make_images(str(tmp_path / "in"), [1, 1, 1])
    with open(tmp_path / "in" / "broken.npy", "wb") as f:
        f.write(b"\x93NUMPY\x01\x00\x10\x00{}")
    out = str(tmp_path / "out")
    args = ["-m", RESNET, "--inputs", str(tmp_path / "in"), "--output-dir", out]
    r = run_map(args)
    assert r.returncode == 1 and "3 written, 0 skipped (already there), 1 failed" in r.stdout
    assert "failed broken: tensor file" in r.stdout, r.stdout
    stamp = os.stat(os.path.join(out, "img00")).st_mtime_ns
    shutil.rmtree(os.path.join(out, "img01"))  # as if interrupted before it was written
    r = run_map(args)
    assert "1 written, 2 skipped (already there), 1 failed" in r.stdout, r.stdout
    assert os.stat(os.path.join(out, "img00")).st_mtime_ns == stamp
    want = one_model(RESNET).predict({"input": arrays["img01"]})[0].get_data_to_numpy()
    assert np.abs(read_output(out, "img01") - want).max() <= 1e-5


def test_seed_unet_folder_items_with_unbatched_timestep(tmp_path):
    rng = np.random.default_rng(5)
    ref = one_model(UNET)
    items = {}
    for i, t in enumerate([10, 10, 500]):  # the third cannot share a request with the first two
        d = tmp_path / "in" / f"prompt{i}"
        d.mkdir(parents=True)
        feeds = {"sample": rng.uniform(-1, 1, (1, 4, 64, 64)).astype(np.float32),
                 "timestep": np.array([t], np.float32),
                 "encoder_hidden_states": rng.uniform(-1, 1, (1, 77, 1024)).astype(np.float32)}
        for k, v in feeds.items():
            np.save(d / f"{k}.npy", v)
        items[f"prompt{i}"] = feeds
    out = tmp_path / "out"
    r = run_map(["-m", UNET, "--inputs", str(tmp_path / "in"), "--output-dir", str(out)])
    assert r.returncode == 0 and "3 written" in r.stdout, r.stdout + r.stderr
    for name, feeds in items.items():
        want = ref.predict(feeds)[0].get_data_to_numpy()
        got = np.load(out / name / "out_sample.npy")
        assert np.abs(got - want).max() <= 1e-5, name


def test_bad_arguments_are_named(tmp_path):
    r = run_map(["-m", RESNET, "--inputs", str(tmp_path / "nowhere"), "--output-dir",
                 str(tmp_path / "o")])
    assert r.returncode != 0 and "is not a folder" in r.stderr, r.stderr
    r = run_map(["-m", RESNET, "--inputs", str(tmp_path)])
    assert r.returncode != 0 and "--output-dir" in r.stderr, r.stderr
