#!/usr/bin/env python3
"""Orchestration overhead of Tandem's parallel runner against the seed's transport.

For a 1 MB and a 100 MB batch (batch 2 over cpu:0,cpu:1) this measures:
  * Tandem: `tandem bench --devices` on a model that only applies Relu, reporting the mean
    per-request overhead = wall time minus the slowest worker's compute (shared-memory inputs,
    outputs written in place, the five-message protocol);
  * the seed: Python multiprocessing.Pipe, one child per device, each receiving its pickled half
    of the batch and sending the result back (an echo), timed per batch;
and prints both with the ratio. Run with Debian's python: /usr/bin/python3 tools/transport_bench.py
"""
import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper


def relu_model(path, features):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def echo_child(conn):
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(msg)


def pipe_seconds(batch_bytes, loops):
    """Seed-style: two children, each gets half the batch pickled through its Pipe and echoes it."""
    half = np.random.rand(batch_bytes // 8).astype(np.float32)
    pipes, procs = [], []
    for _ in range(2):
        parent, child = mp.Pipe()
        p = mp.Process(target=echo_child, args=(child,))
        p.start()
        pipes.append(parent)
        procs.append(p)
    times = []
    for i in range(loops + 1):
        t0 = time.perf_counter()
        for c in pipes:
            c.send(half)
        for c in pipes:
            c.recv()
        if i:  # the first round warms up
            times.append(time.perf_counter() - t0)
    for c in pipes:
        c.send(None)
    for p in procs:
        p.join()
    return float(np.median(times))


def tandem_overhead_ms(tandem, model, loops):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([tandem, "bench", "--model", model, "--devices", "cpu:0,cpu:1", "--batch",
                        "2", "--warmup", "2", "--loops", str(loops), "--json", out.name],
                       check=True, stdout=subprocess.DEVNULL)
        return json.load(open(out.name))["overhead_ms_mean"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tandem", default="build/bin/tandem")
    ap.add_argument("--loops", type=int, default=20)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tandem_transport_")
    print(f"{'batch':>8} {'tandem overhead':>16} {'seed pipe echo':>15} {'pipe GB/s':>10} "
          f"{'pipe / tandem':>14}")
    for label, batch_bytes in (("1 MB", 1 << 20), ("100 MB", 100 << 20)):
        features = batch_bytes // 4 // 2
        model = os.path.join(work, f"relu_{features}.onnx")
        relu_model(model, features)
        loops = args.loops if batch_bytes < (50 << 20) else max(3, args.loops // 4)
        t_ms = tandem_overhead_ms(args.tandem, model, loops)
        p_s = pipe_seconds(batch_bytes, loops)
        gbps = 2 * batch_bytes / p_s / 1e9  # each byte goes out and comes back
        print(f"{label:>8} {t_ms:>13.3f} ms {p_s * 1000:>12.3f} ms {gbps:>10.2f} "
              f"{p_s * 1000 / max(t_ms, 1e-6):>13.1f}x")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
