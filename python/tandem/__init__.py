"""Tandem: ONNX inference on one or many devices, with MindSpore Lite's Python API.

Single device, as in MindSpore Lite::

    import tandem
    context = tandem.Context()
    context.target = ["cpu"]
    context.cpu.thread_num = 2
    model = tandem.Model()
    model.build_from_file("models/sd_unet_tiny/model.onnx", tandem.ModelType.ONNX, context)
    inputs = model.get_inputs()
    for tensor, array in zip(inputs, arrays):
        tensor.set_data_from_numpy(array)          # copies; checks dtype and shape
    outputs = model.predict(inputs)                # list of Tensor; or model.predict(arrays)
    result = outputs[0].get_data_to_numpy()        # a view of the output buffer, no copy

Several devices, the batch split along axis 0 and gathered back::

    with tandem.ParallelPredictor("models/sd_unet_tiny/model.onnx", devices="cpu:0,cpu:1") as p:
        out_sample, = p.predict([sample, timestep, encoder_hidden_states])

Errors are tandem.TandemError (a RuntimeError) with a ``.code``; InvalidArgumentError is also a
ValueError, NotFoundError a FileNotFoundError, UnsupportedError a NotImplementedError.
"""

import os as _os

# Tandem's OpenMP wait policy, a short spin (src/core/openmp_wait.h says why; keep the two in
# step): libgomp reads it when it loads, i.e. with the extension below, so it only takes effect
# if nothing loaded libgomp earlier; a setting of yours is kept.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "3000"


from ._tandem import (  # noqa: F401
    CPUDeviceInfo,
    CUDADeviceInfo,
    Context,
    DataType,
    ExecutionError,
    Future,
    InternalError,
    InvalidArgumentError,
    InvalidModelError,
    Model,
    ModelType,
    NotFoundError,
    ParallelPredictor,
    TandemError,
    Tensor,
    UnsupportedError,
    parse_device_list,
)
from . import _tandem

__version__ = "0.1.0"

__all__ = [
    "CPUDeviceInfo", "CUDADeviceInfo", "Context", "DataType", "ExecutionError", "Future",
    "InternalError", "InvalidArgumentError", "InvalidModelError", "Model", "ModelType", "MpiPredictor",
    "NotFoundError", "ParallelPredictor", "TandemError", "Tensor", "UnsupportedError",
    "parse_device_list", "worker_binary",
]


def _packaged_worker_binary():
    """The `tandem` executable shipped inside an installed package (tandem/bin/tandem)."""
    path = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "bin", "tandem")
    return path if _os.access(path, _os.X_OK) else ""


# ParallelPredictor's worker processes run `tandem worker`. Order: the worker_binary argument,
# $TANDEM_WORKER_BINARY, the binary shipped in this package (pip install), then the build tree's
# build/bin/tandem compiled into the module.
_tandem._set_default_worker_binary(_packaged_worker_binary())


def worker_binary():
    """The `tandem` binary worker processes will run when ParallelPredictor is not told."""
    return (_os.environ.get("TANDEM_WORKER_BINARY") or _tandem._default_worker_binary()
            or "(the build tree's bin/tandem)")


class MpiPredictor:
    """One model over the ranks of an MPI job (``mpirun -np H python3 script.py``).

    Every rank runs its own devices (``devices``, default ``cpu:0``: one cpu device with the
    rank's share of its host's cores); rank 0 splits each batch over the ranks by their measured
    speed (MPI_Scatterv), and gathers the outputs (MPI_Gatherv): the result equals one device
    running the whole batch. MPI comes from mpi4py (Debian's python3-mpi4py), imported here.

    Every rank::

        with tandem.MpiPredictor("model.onnx") as p:   # builds on every rank
            if p.rank == 0:
                outputs = p.predict([sample, timestep, text])
            else:
                p.serve()                               # until rank 0 leaves the `with`

    A rank that fails its shard fails that request with an error naming the rank and its host;
    the job goes on. A rank not heard from for ``liveness`` seconds during a request is dropped
    and the request runs again on the others (under ``mpirun --enable-recovery``). A build
    failure on any rank raises the same error on every rank.
    """

    def __init__(self, model_path, devices=None, *, input_shapes=None, deadline=300.0,
                 liveness=10.0, worker_binary=None, convert_once=True, verify_checksum=True):
        if not _tandem._have_mpi:
            raise UnsupportedError("tandem.MpiPredictor: this build has no MPI; install Debian's "
                                   "libopenmpi-dev and openmpi-bin and build again")
        try:
            from mpi4py import MPI  # noqa: F401  (initialises MPI; libmpi loaded globally)
        except ImportError as e:
            raise UnsupportedError("tandem.MpiPredictor needs mpi4py (Debian's "
                                   "python3-mpi4py)") from e
        self._p = _tandem._MpiPredictor(_os.fspath(model_path), devices,
                                        input_shapes=input_shapes, deadline=deadline,
                                        liveness=liveness,
                                        worker_binary=worker_binary, convert_once=convert_once,
                                        verify_checksum=verify_checksum)
        # mpi4py finalises MPI at exit; rank 0's goodbye to the others must go out before that
        # (atexit runs the newest first, and mpi4py registered when it was imported).
        import atexit
        import weakref
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().finalize())

    rank = property(lambda self: self._p.rank, doc="This process's rank (0 holds requests).")
    size = property(lambda self: self._p.size, doc="Ranks in the job.")
    host = property(lambda self: self._p.host, doc="This rank's host (MPI processor name).")

    def build(self):
        """Collective: builds every rank's devices; raises the same error on every rank."""
        self._p.build()

    def predict(self, inputs):
        """Rank 0: one batch over all ranks; a list of numpy arrays (or a dict name -> array)."""
        return self._p.predict(inputs)

    def predict_on(self, rank, inputs):
        """Rank 0: one batch wholly on rank ``rank`` (to measure each rank alone)."""
        return self._p.predict_on(rank, inputs)

    def serve(self):
        """Ranks other than 0: answer rank 0's requests until it finalizes."""
        self._p.serve()

    def finalize(self):
        """Rank 0: tells the other ranks to stop; every rank: stops its workers. Idempotent."""
        self._p.finalize()

    def get_inputs(self):
        return self._p.get_inputs()

    def get_outputs(self):
        return self._p.get_outputs()

    def stats(self):
        """Rank 0's view: requests, MPI overhead, and per rank its host, items and speed."""
        return self._p.stats()

    def __enter__(self):
        self.build()
        return self

    def __exit__(self, *exc):
        self.finalize()
        return False
