#!/usr/bin/python3
"""`tandem serve`'s /metrics scraped by a real Prometheus (Debian's `prometheus`), on loopback.

  prometheus_test.py path/to/tandem path/to/models

The unit tests check the text format line by line; this checks that Prometheus itself accepts
the exposition: the target is healthy, and counters, gauges and histograms come out of its query
API with the values the server reported. The harness is serve_test.py's. Every wait is bounded.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_test as h  # noqa: E402  (reads the same argv: tandem, models)

check = h.check
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=h.TIMEOUT) as r:
        doc = json.load(r)
    return doc["data"]["result"] if doc.get("status") == "success" else None


def main():
    if not os.path.exists(PROMETHEUS):
        print("prometheus_test: FAIL: Debian's prometheus is not installed (run tools/setup.sh)")
        return 1
    repo = os.path.join(h.TMP, "repo")
    os.makedirs(os.path.join(repo, "lstm", "1"))
    shutil.copy(os.path.join(h.MODELS, "lstm_tiny", "model.onnx"), os.path.join(repo, "lstm", "1"))
    with open(os.path.join(repo, "lstm", "config.json"), "w") as f:
        json.dump({"devices": "cpu:0,cpu:1", "max_batch_size": 4,
                   "dynamic_batching": {"max_queue_delay_us": 1000}}, f)
    s = h.Server(repo, "--metrics-port", "0")
    prom = None
    try:
        body, headers = h.json_request([("input_ids", np.array([[1, 2, 3]], dtype=np.int64))])
        for _ in range(10):
            status, _, _ = s.request("POST", "/v2/models/lstm/infer", body, headers)
            check(status == 200, f"infer: {status}")
        s.request("POST", "/v2/models/lstm/infer", b"{", {})  # one failure

        config = os.path.join(h.TMP, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: tandem\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{s.metrics_port}']\n")
        port = free_port()
        log = open(os.path.join(h.TMP, "prometheus.log"), "w")
        prom = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(h.TMP, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)

        # Up, and the server's samples stored: a counter, a gauge, a histogram's count.
        want = {
            'up{job="tandem"}': 1,
            'tandem_inference_requests_total{model="lstm"}': 11,
            'tandem_inference_failures_total{model="lstm"}': 1,
            'tandem_model_ready{model="lstm"}': 1,
            'sum(tandem_device_up{model="lstm"})': 2,
            'sum(tandem_batch_size_count{model="lstm"})': None,  # >= 1, batches vary
        }
        got = {}
        deadline = time.time() + h.TIMEOUT
        while time.time() < deadline and len(got) < len(want):
            if prom.poll() is not None:
                break
            for expr in want:
                if expr in got:
                    continue
                try:
                    result = query(port, expr)
                except OSError:
                    result = None  # not listening yet
                if result:
                    got[expr] = float(result[0]["value"][1])
            time.sleep(0.25)
        for expr, value in want.items():
            if value is None:
                check(got.get(expr, 0) >= 1, f"{expr}: {got.get(expr)}")
            else:
                check(got.get(expr) == value, f"{expr}: want {value}, got {got.get(expr)}")
        # What Prometheus says of the target: healthy, no scrape error.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets",
                                    timeout=h.TIMEOUT) as r:
            targets = json.load(r)["data"]["activeTargets"]
        check(len(targets) == 1 and targets[0]["health"] == "up" and not targets[0]["lastError"],
              f"target: {targets}")
        # The histogram's buckets form a valid histogram for PromQL.
        q = query(port, 'histogram_quantile(0.5, sum by (le) '
                        '(tandem_queue_duration_seconds_bucket{model="lstm"}))')
        check(bool(q) and q[0]["value"][1] != "NaN", f"median queue time: {q}")
        print(f"prometheus_test: scraped {sorted(got.items())}", flush=True)
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(timeout=h.TIMEOUT)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        check(s.stop() == 0, "the server exits 0 on SIGTERM")
        if h.failures:
            logfile = os.path.join(h.TMP, "prometheus.log")
            if os.path.exists(logfile):
                print("prometheus log (end):\n" + open(logfile).read()[-3000:])
        shutil.rmtree(h.TMP, ignore_errors=True)
    print(f"prometheus_test: {h.passed} checks passed, {len(h.failures)} failed")
    return 1 if h.failures else 0


if __name__ == "__main__":
    sys.exit(main())
