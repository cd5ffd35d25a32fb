#!/usr/bin/env python3
"""The closing-note benchmark of issue #4: the seed-style example (multiprocessing.Process + Pipe,
pickled tensors, examples/parallel_sd_unet/parallel_predict_utils.py) against
tandem.ParallelPredictor (shared memory, `tandem worker` processes) on the flagship UNet, two CPU
devices, batch 2 and batch 16. Total predict time of each (split + predict + gather), after a
warm-up, over several runs; the ratio seed / ParallelPredictor.

    PYTHONPATH=build/python /usr/bin/python3 tools/bench_seed_vs_predictor.py [--runs 5]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples", "parallel_sd_unet"))

import tandem  # noqa: E402
from main import make_inputs  # noqa: E402
from parallel_predict_utils import ParallelPredictUtils  # noqa: E402


def time_runs(fn, warmup, runs):
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def seed_style(model, devices, batch, warmup, runs):
    per = batch // devices
    sample, timestep, ehs = make_inputs(batch)
    utils = ParallelPredictUtils(model, devices, per)
    utils.build_model()
    try:
        def once():
            shards = [[sample[i * per:(i + 1) * per], timestep, ehs[i * per:(i + 1) * per]]
                      for i in range(devices)]
            result = utils.predict(shards)
            return np.concatenate([r[0] for r in result])
        return time_runs(once, warmup, runs)
    finally:
        utils.finalize()


def predictor_style(model, devices, batch, warmup, runs):
    inputs = list(make_inputs(batch))
    with tandem.ParallelPredictor(model, devices) as p:
        return time_runs(lambda: p.predict(inputs)[0], warmup, runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "sd_unet_tiny", "model.onnx"))
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--batches", default="2,16")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        seed_t, seed_out = seed_style(args.model, args.devices, batch, args.warmup, args.runs)
        pred_t, pred_out = predictor_style(args.model, args.devices, batch, args.warmup,
                                           args.runs)
        diff = float(np.abs(seed_out - pred_out).max())
        rows.append((batch, seed_t, pred_t, diff))
    print(f"\nmodel {os.path.relpath(args.model, ROOT)}, {args.devices} cpu devices, "
          f"{os.cpu_count()} host cores, warm-up {args.warmup}, {args.runs} runs each (seconds)")
    print(f"{'batch':>5}  {'seed median':>11} {'seed min':>9}  {'PP median':>9} {'PP min':>9}  "
          f"{'ratio seed/PP':>13}  {'max|diff|':>9}")
    for batch, s, p, diff in rows:
        ratio = statistics.median(s) / statistics.median(p)
        print(f"{batch:>5}  {statistics.median(s):>11.3f} {min(s):>9.3f}  "
              f"{statistics.median(p):>9.3f} {min(p):>9.3f}  {ratio:>13.2f}  {diff:>9.2g}")


if __name__ == "__main__":
    main()
