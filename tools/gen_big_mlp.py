"""A large plain model without torch (python3-onnx and numpy only), for load-time and memory
benchmarks of `tandem convert`: LAYERS x (MatMul [WIDTH, WIDTH] + Add + Relu), random weights.
  /usr/bin/python3 tools/gen_big_mlp.py OUT.onnx [--width 2048] [--layers 24]   (24 x 2048: 384 MiB)
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("out")
ap.add_argument("--width", type=int, default=2048)
ap.add_argument("--layers", type=int, default=24)
a = ap.parse_args()
W, L = a.width, a.layers
rng = np.random.default_rng(0)
nodes, inits = [], []
x = "x"
for i in range(L):
    w = (rng.standard_normal((W, W), dtype=np.float32) * (1 / np.sqrt(W))).astype(np.float32)
    b = np.zeros(W, np.float32)
    inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
    nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]),
              helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
              helper.make_node("Relu", [f"a{i}"], [f"r{i}"])]
    x = f"r{i}"
g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", W])],
                      [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", W])], inits)
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), a.out)
