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
    "InternalError", "InvalidArgumentError", "InvalidModelError", "Model", "ModelType",
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
