"""One rank of an MPI job driven from Python (run by test_mpi.py under mpirun): every rank builds
tandem.MpiPredictor over mpi4py; rank 0 predicts a batch of 5 and compares it with one Model
running the whole batch, then checks that bad input is refused and the job still serves.
Prints "mpi_job: ok" on rank 0 when all holds. argv: python path, model path."""
import sys

sys.path.insert(0, sys.argv[1])
import numpy as np  # noqa: E402
import tandem  # noqa: E402
from mpi4py import MPI  # noqa: E402

model_path = sys.argv[2]
with tandem.MpiPredictor(model_path) as p:
    assert p.size == MPI.COMM_WORLD.Get_size() and p.rank == MPI.COMM_WORLD.Get_rank()
    if p.rank != 0:
        p.serve()
    else:
        rng = np.random.default_rng(7)
        x = rng.uniform(-1, 1, size=(5, 3, 64, 64)).astype(np.float32)
        got = p.predict([x])
        ctx = tandem.Context()
        ref = tandem.Model()
        ref.build_from_file(model_path, tandem.ModelType.ONNX, ctx)
        t = ref.get_inputs()[0]
        t.set_data_from_numpy(x)
        want = ref.predict([t])[0].get_data_to_numpy()
        assert got[0].shape == want.shape, (got[0].shape, want.shape)
        assert np.abs(got[0] - want).max() <= 1e-5, np.abs(got[0] - want).max()
        try:
            p.predict([x[:, :2]])
            raise AssertionError("a wrong shape was accepted")
        except tandem.InvalidArgumentError as e:
            assert "input" in str(e), e
        again = p.predict([x[:2]])  # still serving after the refusal
        assert np.abs(again[0] - want[:2]).max() <= 1e-5
        s = p.stats()
        assert s["requests"] == 2 and len(s["ranks"]) == p.size, s
        assert sum(r["items"] for r in s["ranks"]) == 7, s
        # The whole batch on the last rank alone: the same answer, and only that rank's items grow.
        alone = p.predict_on(p.size - 1, [x[:2]])
        assert np.abs(alone[0] - want[:2]).max() <= 1e-5
        s2 = p.stats()
        assert s2["ranks"][-1]["items"] == s["ranks"][-1]["items"] + 2, (s, s2)
        try:
            p.predict_on(p.size, [x[:2]])
            raise AssertionError("predict_on a rank not in the job was accepted")
        except tandem.InvalidArgumentError as e:
            assert f"rank {p.size} is not a member" in str(e), e
        print("mpi_job: ok", flush=True)
