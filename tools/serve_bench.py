#!/usr/bin/python3
"""Throughput and latency of `tandem serve` against `tandem bench` on the same model (issue 14's
acceptance benchmark): batch-1 KServe v2 requests (binary tensor data) at several concurrencies,
with and without dynamic batching, on loopback.

  tools/serve_bench.py [--tandem build/bin/tandem] [--model models/sd_unet_tiny/model.onnx]
                       [--devices cpu:0,cpu:1] [--concurrency 1,4,16] [--seconds 10]
                       [--max-batch 16] [--delay-us 2000]

The client is wrk (Debian's `wrk`, --client wrk, the default when it is installed: one keep-alive
connection per concurrent client, latencies from its --latency percentiles) or Python threads
(--client python). Either takes CPU from the server on a small machine, so compare runs on the
same machine only, and prefer a quiet one.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import onnx


def model_inputs(path, batch):
    """Random inputs for `path` with symbolic dims set to `batch` (float32 or int64)."""
    model = onnx.load(path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else batch
                 for d in vi.type.tensor_type.shape.dim]
        elem = vi.type.tensor_type.elem_type
        if elem == onnx.TensorProto.FLOAT:
            out.append((vi.name, "FP32", rng.uniform(-1, 1, shape).astype(np.float32)))
        elif elem == onnx.TensorProto.INT64:
            out.append((vi.name, "INT64", rng.integers(0, 10, shape).astype(np.int64)))
        else:
            sys.exit(f"serve_bench: input {vi.name} has an element type this tool does not make")
    return out


def request_body(inputs):
    doc = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": dt,
                       "parameters": {"binary_data_size": a.nbytes}} for n, dt, a in inputs],
           "parameters": {"binary_data_output": True}}
    header = json.dumps(doc).encode()
    body = header + b"".join(a.tobytes() for _, _, a in inputs)
    return body, {"Inference-Header-Content-Length": str(len(header)),
                  "Content-Type": "application/octet-stream"}


def start_server(tandem, repo):
    proc = subprocess.Popen([tandem, "serve", "--model-repository", repo, "--host", "127.0.0.1",
                             "--http-port", "0", "--grpc-port", "-1"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    port = None
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            sys.exit("serve_bench: the server exited before it was ready")
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "tandem serve: ready" in line:
            return proc, port
    proc.kill()
    sys.exit("serve_bench: the server was not ready within 300 s")


def drive(port, body, headers, concurrency, seconds):
    """Requests from `concurrency` clients for `seconds`: latencies (s), errors, wall time."""
    stop_at = time.time() + seconds
    latencies, errors = [], []
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, bad = [], []
        while time.time() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v2/models/m/infer", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    bad.append(r.status)
                    continue
            except (OSError, http.client.HTTPException) as e:
                bad.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(client) for _ in range(concurrency)]:
            f.result()
    return latencies, errors, time.time() - start


WRK_SCRIPT = """
local f = assert(io.open(os.getenv("SERVE_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = os.getenv("SERVE_BENCH_HEADER_LENGTH")
"""


def wrk_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]
    return float(m.group(1)) * scale


def drive_wrk(port, body, headers, concurrency, seconds, tmp):
    """wrk with `concurrency` connections for `seconds`: (req/s, p50 ms, p99 ms, errors)."""
    body_path = os.path.join(tmp, "body.bin")
    with open(body_path, "wb") as f:
        f.write(body)
    script = os.path.join(tmp, "post.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    env = dict(os.environ, SERVE_BENCH_BODY=body_path,
               SERVE_BENCH_HEADER_LENGTH=headers["Inference-Header-Content-Length"])
    r = subprocess.run(["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency), "-d",
                        f"{max(1, round(seconds))}s", "--timeout", "120s", "--latency", "-s", script,
                        f"http://127.0.0.1:{port}/v2/models/m/infer"],
                       capture_output=True, text=True, env=env, timeout=seconds + 180)
    out = r.stdout
    if r.returncode != 0 or "Requests/sec" not in out:
        sys.exit(f"serve_bench: wrk failed:\n{out}\n{r.stderr}")
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    pct = {m.group(1): wrk_ms(m.group(2))
           for m in re.finditer(r"^\s+(50|99)(?:\.000)?%\s+(\S+)\s*$", out, re.M)}
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return rate, pct.get("50", float("nan")), pct.get("99", float("nan")), errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tandem", default="build/bin/tandem")
    ap.add_argument("--model", default="models/sd_unet_tiny/model.onnx")
    ap.add_argument("--devices", default="cpu:0,cpu:1")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--delay-us", type=int, default=2000)
    ap.add_argument("--client", choices=["wrk", "python"],
                    default="wrk" if shutil.which("wrk") else "python")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    body, headers = request_body(model_inputs(args.model, 1))

    r = subprocess.run([args.tandem, "bench", "-m", args.model, "--devices", args.devices,
                        "--batch", str(args.max_batch), "--duration", str(args.seconds)],
                       capture_output=True, text=True, check=True)
    m = re.search(r"throughput: ([0-9.]+) items/s", r.stdout)
    bench = float(m.group(1)) if m else float("nan")
    print(f"tandem bench --devices {args.devices} --batch {args.max_batch}: {bench:.1f} items/s")

    tmp = tempfile.mkdtemp(prefix="serve_bench_")
    try:
        for batching in (False, True):
            repo = os.path.join(tmp, "batching" if batching else "plain")
            os.makedirs(os.path.join(repo, "m", "1"))
            shutil.copy(args.model, os.path.join(repo, "m", "1", "model.onnx"))
            config = {"devices": args.devices}
            if batching:
                config.update({"max_batch_size": args.max_batch,
                               "dynamic_batching": {"max_queue_delay_us": args.delay_us}})
            with open(os.path.join(repo, "m", "config.json"), "w") as f:
                json.dump(config, f)
            proc, port = start_server(args.tandem, repo)
            try:
                drive(port, body, headers, 1, min(2.0, args.seconds))  # warm-up
                for c in levels:
                    if args.client == "wrk":
                        rate, p50, p99, errors = drive_wrk(port, body, headers, c, args.seconds,
                                                           tmp)
                    else:
                        lat, bad, wall = drive(port, body, headers, c, args.seconds)
                        lat.sort()
                        p = (lambda q: 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]) \
                            if lat else (lambda q: float("nan"))
                        rate, p50, p99, errors = len(lat) / wall, p(0.5), p(0.99), len(bad)
                    print(f"{'batching' if batching else 'no batching':<12} concurrency {c:>3}: "
                          f"{rate:7.1f} req/s ({rate / bench:4.2f}x bench)  p50 {p50:7.1f} ms"
                          f"  p99 {p99:7.1f} ms  p99/p50 {p99 / p50:4.2f}  "
                          f"errors {errors}  ({args.client})", flush=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
