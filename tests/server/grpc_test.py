#!/usr/bin/python3
"""`tandem serve`'s gRPC frontend end to end, with the Node.js client @grpc/grpc-js (the client
the issue names), on free loopback ports.

  grpc_test.py path/to/tandem path/to/models           the test (ctest grpc_test)
  grpc_test.py path/to/tandem path/to/models --bench   gRPC vs HTTP/REST infer latency

The client is tests/server/grpc_client/client.js, its packages installed there by
tools/setup.sh (npm ci); nothing is downloaded here, and without them the test fails and says so.
Every call has a deadline and every client run a timeout. Checks: live, ready, server and model
metadata; infer with raw and with typed contents against the models' reference outputs and the
same request over HTTP; requested outputs; unknown model -> NOT_FOUND; wrong shape, datatype,
byte size, BYTES, unknown output -> INVALID_ARGUMENT naming the field; a message over
--max-request-bytes -> RESOURCE_EXHAUSTED; a gRPC port in use refused; SIGTERM with gRPC calls in
flight answers every one and exits 0.
"""
import base64
import json
import math
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_test as h  # noqa: E402  (reads the same argv: tandem, models; its Server, check)

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.join(HERE, "grpc_client")
PROTO = os.path.join(HERE, "..", "..", "src", "server", "grpc_predict_v2.proto")
TANDEM, MODELS, TIMEOUT, DTYPES = h.TANDEM, h.MODELS, h.TIMEOUT, h.DTYPES
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
check = h.check


def test_data(model, kind):
    folder = os.path.join(MODELS, model, "test_data_set_0")
    out, i = [], 0
    while os.path.exists(os.path.join(folder, f"{kind}_{i}.pb")):
        out.append(h.read_pb(os.path.join(folder, f"{kind}_{i}.pb")))
        i += 1
    return out


def close(a, b, atol=1e-4):
    """Against the models' reference outputs (torch's): a relative tolerance too."""
    return a.shape == b.shape and a.dtype == b.dtype and np.allclose(a, b, atol=atol, rtol=1e-4)


def node_client(job, progress=None):
    """Runs client.js on `job`; returns its JSON. `progress` is called for each stderr line."""
    job = dict(job, proto=PROTO, timeout_ms=int(TIMEOUT * 1000))
    # In a file, not on stdin: Node.js 18's synchronous read of a pipe can fail with EAGAIN.
    fd, job_path = tempfile.mkstemp(prefix="grpc_job_", suffix=".json", dir=h.TMP)
    with os.fdopen(fd, "w") as f:
        json.dump(job, f)
    proc = subprocess.Popen(["node", os.path.join(CLIENT_DIR, "client.js"), job_path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err_lines = []

    def read_err():
        for line in proc.stderr:
            err_lines.append(line)
            if progress:
                progress(line)

    t = threading.Thread(target=read_err, daemon=True)
    t.start()
    try:
        out = proc.stdout.read()
        proc.wait(timeout=TIMEOUT + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError("the node client did not finish")
    t.join(timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"the node client failed ({proc.returncode}): {''.join(err_lines)}")
    return json.loads(out)


class Server(h.Server):
    """serve_test's server (which listens for gRPC on a free port too), and its gRPC address."""

    def __init__(self, repo, *extra):
        super().__init__(repo, *extra)
        ports = [re.search(r"gRPC on 127\.0\.0\.1:(\d+)", line) for line in self.lines]
        ports = [int(m.group(1)) for m in ports if m]
        if not ports:
            self.stop()
            raise RuntimeError("the server names no gRPC port:\n" + "".join(self.lines))
        self.grpc_port = ports[0]
        self.address = f"127.0.0.1:{self.grpc_port}"

    def calls(self, calls, mode="sequential"):
        return node_client(dict(address=self.address, mode=mode, calls=calls))["results"]

    def call(self, rpc, request=None):
        return self.calls([{"rpc": rpc, "request": request or {},
                            "deadline_ms": int(TIMEOUT * 1000)}])[0]

    def metric(self, name, **labels):
        status, _, body = self.request("GET", "/metrics")
        assert status == 200
        return h.metric(body.decode(), name, **labels)


def raw_request(model, named_inputs, outputs=None, req_id=""):
    return {"model_name": model, "id": req_id,
            "inputs": [{"name": n, "datatype": NAMES[a.dtype], "shape": list(a.shape)}
                       for n, a in named_inputs],
            "outputs": [{"name": o} for o in outputs or []],
            "raw_input_contents": [base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()
                                   for _, a in named_inputs]}


def typed_request(model, named_inputs):
    field = {"FP32": "fp32_contents", "INT64": "int64_contents"}
    inputs = []
    for n, a in named_inputs:
        values = a.flatten().tolist()
        if a.dtype == np.int64:
            values = [str(v) for v in values]  # int64 as strings: no precision lost in JSON
        inputs.append({"name": n, "datatype": NAMES[a.dtype], "shape": list(a.shape),
                       "contents": {field[NAMES[a.dtype]]: values}})
    return {"model_name": model, "inputs": inputs}


def decode(response):
    """{name: array} from a ModelInferResponse (raw_output_contents)."""
    out = {}
    raws = response["raw_output_contents"]
    for i, o in enumerate(response["outputs"]):
        data = base64.b64decode(raws[i]) if i < len(raws) else b""
        shape = [int(d) for d in o["shape"]]
        out[o["name"]] = np.frombuffer(data, dtype=DTYPES[o["datatype"]]).reshape(shape)
    return out


def rest_infer(s, model, named_inputs):
    doc = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": NAMES[a.dtype],
                       "parameters": {"binary_data_size": a.nbytes}} for n, a in named_inputs],
           "parameters": {"binary_data_output": True}}
    header = json.dumps(doc).encode()
    body = header + b"".join(np.ascontiguousarray(a).tobytes() for _, a in named_inputs)
    status, headers, data = s.request("POST", f"/v2/models/{model}/infer", body,
                             {"Inference-Header-Content-Length": str(len(header)),
                              "Content-Type": "application/octet-stream"})
    assert status == 200, data
    length = int(headers["Inference-Header-Content-Length"])
    out, offset = {}, length
    for o in json.loads(data[:length])["outputs"]:
        n = o["parameters"]["binary_data_size"]
        out[o["name"]] = np.frombuffer(data[offset:offset + n],
                                       dtype=DTYPES[o["datatype"]]).reshape(o["shape"])
        offset += n
    return out


def make_repo(tmp):
    repo = os.path.join(tmp, "repo")
    models = {"lstm": ("lstm_tiny", None), "resnet": ("resnet_tiny", None),
              "bert": ("bert_tiny", {"devices": 1, "mode": "threads"}),
              # Two devices, no merging: each call is its own run, so many stay in flight.
              "unet": ("sd_unet_tiny", {"devices": "cpu:0,cpu:1"})}
    for name, (src, config) in models.items():
        os.makedirs(os.path.join(repo, name, "1"))
        shutil.copy(os.path.join(MODELS, src, "model.onnx"), os.path.join(repo, name, "1"))
        if config:
            with open(os.path.join(repo, name, "config.json"), "w") as f:
                json.dump(config, f)
    return repo


def test_health_and_metadata(s):
    r = s.call("ServerLive")
    check(r["ok"] and r["response"]["live"] is True, f"ServerLive: {r}")
    r = s.call("ServerReady")
    check(r["ok"] and r["response"]["ready"] is True, f"ServerReady: {r}")
    r = s.call("ServerMetadata")
    check(r["ok"] and r["response"]["name"] == "tandem" and r["response"]["version"],
          f"ServerMetadata: {r}")
    r = s.call("ModelReady", {"name": "lstm"})
    check(r["ok"] and r["response"]["ready"] is True, f"ModelReady lstm: {r}")
    r = s.call("ModelReady", {"name": "lstm", "version": "1"})
    check(r["ok"] and r["response"]["ready"] is True, f"ModelReady lstm version 1: {r}")
    r = s.call("ModelReady", {"name": "nope"})
    check(not r["ok"] and r["code_name"] == "NOT_FOUND", f"ModelReady of an unknown model: {r}")
    r = s.call("ModelMetadata", {"name": "bert"})
    ok = r["ok"]
    check(ok and r["response"]["versions"] == ["1"] and r["response"]["platform"] == "onnx",
          f"ModelMetadata bert: {r}")
    if ok:
        status, _, body = s.request("GET", "/v2/models/bert")
        rest = json.loads(body)
        as_grpc = lambda ts: [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in ts]
        check(status == 200 and as_grpc(r["response"]["inputs"]) == as_grpc(rest["inputs"]) and
              as_grpc(r["response"]["outputs"]) == as_grpc(rest["outputs"]),
              f"gRPC and REST metadata agree: {r['response']} vs {rest}")
        check(as_grpc(r["response"]["inputs"])[0] == ("input_ids", "INT64", [-1, -1]),
              f"symbolic dims are -1: {r['response']['inputs']}")
    r = s.call("ModelMetadata", {"name": "lstm", "version": "9"})
    check(not r["ok"] and r["code_name"] == "NOT_FOUND", f"ModelMetadata of version 9: {r}")


def test_infer(s):
    for name, src in [("lstm", "lstm_tiny"), ("resnet", "resnet_tiny"), ("bert", "bert_tiny")]:
        inputs, refs = test_data(src, "input"), test_data(src, "output")
        rest = rest_infer(s, name, inputs)
        for kind, request in [("raw", raw_request(name, inputs, req_id="r1")),
                              ("typed", typed_request(name, inputs))]:
            r = s.call("ModelInfer", request)
            if not r["ok"]:
                check(False, f"{name} {kind} infer: {r}")
                continue
            resp = r["response"]
            out = decode(resp)
            check(resp["model_name"] == name and resp["model_version"] == "1",
                  f"{name} {kind}: model and version in the response: {resp['model_name']}")
            check(not any(o.get("contents") and any(o["contents"].values())
                          for o in resp["outputs"]), f"{name} {kind}: outputs come raw only")
            check([o["name"] for o in resp["outputs"]] == [n for n, _ in refs],
                  f"{name} {kind}: every output, in model order: {list(out)}")
            for (ref_name, ref) in refs:
                got = out.get(ref_name)
                check(got is not None and close(got, ref),
                      f"{name} {kind}: output {ref_name} matches the reference")
                check(got is not None and np.array_equal(got, rest[ref_name]),
                      f"{name} {kind}: output {ref_name} equals the same request over REST")
            if kind == "raw":
                check(resp["id"] == "r1", f"{name}: the id comes back: {resp['id']!r}")
    # One output of two, by name.
    inputs = test_data("bert_tiny", "input")
    r = s.call("ModelInfer", raw_request("bert", inputs, outputs=["pooled"]))
    check(r["ok"] and [o["name"] for o in r["response"]["outputs"]] == ["pooled"] and
          len(r["response"]["raw_output_contents"]) == 1, f"requested output only: {r}")


def test_errors(s):
    inputs = test_data("lstm_tiny", "input")
    (name, ids), = inputs

    def expect(request, code, text, what):
        r = s.call("ModelInfer", request)
        check(not r["ok"] and r["code_name"] == code and text in (r.get("details") or ""),
              f"{what}: want {code} with '{text}', got {r}")

    expect(raw_request("nope", inputs), "NOT_FOUND", "nope", "unknown model")
    req = raw_request("lstm", inputs)
    req["model_version"] = "7"
    expect(req, "NOT_FOUND", "7", "unknown version")
    expect(raw_request("lstm", [(name, ids.reshape(-1))]), "INVALID_ARGUMENT", "shape",
           "wrong rank")
    expect(raw_request("lstm", [(name, ids.astype(np.int32))]), "INVALID_ARGUMENT", "datatype",
           "wrong datatype")
    req = raw_request("lstm", inputs)
    req["raw_input_contents"][0] = base64.b64encode(ids.tobytes()[:-1]).decode()
    expect(req, "INVALID_ARGUMENT", "raw_input_contents[0] has", "raw byte size")
    req = typed_request("lstm", inputs)
    req["inputs"][0]["contents"]["int64_contents"].pop()
    expect(req, "INVALID_ARGUMENT", "contents.int64_contents has", "typed element count")
    req = raw_request("lstm", inputs)
    req["inputs"][0]["datatype"] = "BYTES"
    expect(req, "INVALID_ARGUMENT", "BYTES", "BYTES")
    req = raw_request("lstm", inputs)
    req["inputs"][0]["name"] = "not_an_input"
    expect(req, "INVALID_ARGUMENT", "input_ids", "missing input")
    expect(raw_request("lstm", inputs, outputs=["nope"]), "INVALID_ARGUMENT", "nope",
           "unknown output")
    req = raw_request("lstm", inputs)
    req["inputs"][0]["contents"] = {"int64_contents": ["1"]}
    expect(req, "INVALID_ARGUMENT", "raw_input_contents", "contents beside raw contents")
    # Over --max-request-bytes (4 MiB): refused by gRPC before it is decoded.
    big = [("input", np.zeros((8, 3, 256, 256), np.float32))]  # 6 MiB
    expect(raw_request("resnet", big), "RESOURCE_EXHAUSTED", "", "message over the limit")
    # Failures count in the model's metrics, as over HTTP.
    failed = s.metric("tandem_inference_failures_total", model="lstm")
    check(failed is not None and failed >= 8, f"gRPC failures in the metrics: {failed}")
    # The server still answers after all that.
    r = s.call("ModelInfer", raw_request("lstm", inputs))
    check(r["ok"], f"infer after the errors: {r}")


def test_client_deadline(s):
    # A burst of unet calls at once, each with the same deadline: the later ones expire while
    # queued behind the earlier ones. The server must see that (polling the call's cancellation)
    # and drop them, counting failures, instead of computing answers nobody reads.
    # The deadline is at least 150 ms, so that on a loaded machine the first calls still reach
    # the server in time (with 3 latencies of a fast model, about 55 ms, none did in one CI run),
    # and the burst is long enough to queue for 3 deadlines on the model's two devices.
    inputs = test_data("sd_unet_tiny", "input")
    single = s.calls([{"rpc": "ModelInfer", "request": raw_request("unet", inputs),
                       "deadline_ms": int(TIMEOUT * 1000), "repeat": 3}])
    check(all(r["ok"] for r in single), f"single unet calls: {[r.get('code_name') for r in single]}")
    single_ms = max(1.0, min(r.get("ms", 1000) for r in single))
    deadline_ms = max(150, int(3 * single_ms))
    burst = min(240, max(24, math.ceil(3 * deadline_ms * 2 / single_ms)))
    failed_before = s.metric("tandem_inference_failures_total", model="unet") or 0
    requests_before = s.metric("tandem_inference_requests_total", model="unet") or 0
    # The channel is open before the burst: on a loaded machine a fresh client's connection
    # set-up alone can outlast the deadline, and then no call reaches the server at all.
    results = node_client(dict(address=s.address, mode="concurrent", connect_first=True,
                               calls=[{"rpc": "ModelInfer", "request": raw_request("unet", inputs),
                                       "deadline_ms": deadline_ms, "repeat": burst}]))["results"]
    expired = sum(1 for r in results if r.get("code_name") == "DEADLINE_EXCEEDED")
    check(expired >= 1, f"some calls expire on the client: {[r.get('code_name') for r in results]}")
    deadline = time.time() + 5
    dropped = 0
    while time.time() < deadline:
        dropped = (s.metric("tandem_inference_failures_total", model="unet") or 0) - failed_before
        if dropped >= 1:
            break
        time.sleep(0.02)
    arrived = (s.metric("tandem_inference_requests_total", model="unet") or 0) - requests_before
    check(dropped >= 1, f"expired calls are dropped by the server within 5 s: {dropped} of "
                        f"{expired} expired ({arrived} reached the model)")
    r = s.call("ModelInfer", raw_request("unet", inputs))
    check(r["ok"], f"unet answers after the expired calls: {r.get('code_name')}")


def test_port_in_use(s, repo):
    r = subprocess.run([TANDEM, "serve", "--model-repository", repo, "--host", "127.0.0.1",
                        "--http-port", "0", "--grpc-port", str(s.grpc_port)],
                       capture_output=True, text=True, timeout=TIMEOUT)
    check(r.returncode != 0 and "cannot listen for gRPC" in r.stderr + r.stdout,
          f"a gRPC port in use is refused: {r.returncode} {r.stderr[-500:]}")


def test_grpc_off(repo):
    proc = subprocess.Popen([TANDEM, "serve", "--model-repository", repo, "--host", "127.0.0.1",
                             "--http-port", "0", "--grpc-port", "-1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.time() + TIMEOUT
    for line in proc.stdout:
        lines.append(line)
        if "listening on http" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=TIMEOUT)
    out = "".join(lines) + rest
    check("gRPC on" not in out and proc.returncode == 0, f"--grpc-port -1 serves no gRPC: {out}")


def test_sigterm_drains(s):
    inputs = test_data("sd_unet_tiny", "input")
    (ref_name, ref), = test_data("sd_unet_tiny", "output")
    n = 24
    started = s.metric("tandem_inference_requests_total", model="unet") or 0
    answered = []
    result = {}

    def run():
        try:
            result["r"] = node_client(
                dict(address=s.address, mode="concurrent", progress=True,
                     calls=[{"rpc": "ModelInfer", "request": raw_request("unet", inputs),
                             "deadline_ms": int(TIMEOUT * 1000), "repeat": n}]),
                progress=answered.append)["results"]
        except Exception as e:  # reported below
            result["error"] = repr(e)

    t = threading.Thread(target=run)
    t.start()
    # Every call has reached the model (counted), so none can arrive after the signal.
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        count = s.metric("tandem_inference_requests_total", model="unet") or 0
        if count >= started + n:
            break
        time.sleep(0.005)
    s.proc.send_signal(signal.SIGTERM)
    in_flight = n - len(answered)
    t.join(TIMEOUT * 2)
    code = s.proc.wait(timeout=TIMEOUT)
    results = result.get("r") or []
    good = sum(1 for r in results if r["ok"] and close(decode(r["response"])[ref_name], ref))
    print(f"SIGTERM: {in_flight} of {n} gRPC calls still unanswered at the signal; {good} "
          f"answered correctly in all; exit status {code}", flush=True)
    check("error" not in result, f"the client ran: {result.get('error')}")
    check(in_flight > 0, "some calls were still in flight at SIGTERM (else this tests nothing)")
    check(good == n, f"SIGTERM answers every gRPC call in flight: "
          f"{[r.get('code_name') for r in results if not r['ok']]}")
    check(code == 0, f"exit status 0 after SIGTERM, got {code}")


def bench(s, count=300):
    """Sequential infer latency, gRPC (raw contents) vs HTTP/REST (binary tensor data), the same
    node process kind, model and input, interleaved in rounds."""
    inputs = test_data("lstm_tiny", "input")
    doc = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": NAMES[a.dtype],
                       "parameters": {"binary_data_size": a.nbytes}} for n, a in inputs],
           "parameters": {"binary_data_output": True}}
    header = json.dumps(doc).encode()
    body = header + b"".join(a.tobytes() for _, a in inputs)
    rest_job = {"address": s.address, "calls": [],
                "rest": {"url": f"http://127.0.0.1:{s.port}/v2/models/lstm/infer",
                         "body": base64.b64encode(body).decode(), "repeat": count,
                         "headers": {"Inference-Header-Content-Length": str(len(header)),
                                     "Content-Type": "application/octet-stream"}}}
    grpc_job = {"address": s.address, "latencies_only": True, "mode": "sequential",
                "calls": [{"rpc": "ModelInfer", "request": raw_request("lstm", inputs),
                           "repeat": count}]}
    node_client(dict(grpc_job, calls=[dict(grpc_job["calls"][0], repeat=20)]))  # warm up
    node_client(dict(rest_job, rest=dict(rest_job["rest"], repeat=20)))
    lat = {"grpc": [], "rest": []}
    for _ in range(3):
        for kind, job in (("grpc", grpc_job), ("rest", rest_job)):
            r = node_client(job)
            if r["errors"]:
                raise RuntimeError(f"{kind} errors: {r['errors']}")
            lat[kind] += r["ms"][1:]  # the first call of a client connects
    for kind, ms in lat.items():
        ms = np.array(ms)
        print(f"{kind:5s} lstm_tiny [1,{inputs[0][1].shape[1]}]: {len(ms)} calls, "
              f"p50 {np.percentile(ms, 50):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms, "
              f"p99 {np.percentile(ms, 99):.3f} ms, mean {ms.mean():.3f} ms")


def main():
    benching = sys.argv[3:] == ["--bench"]
    if shutil.which("node") is None:
        print("grpc_test: FAILED: node is not installed: run tools/setup.sh")
        return 1
    if not os.path.isdir(os.path.join(CLIENT_DIR, "node_modules", "@grpc", "grpc-js")) or \
            not os.path.isdir(os.path.join(CLIENT_DIR, "node_modules", "@grpc", "proto-loader")):
        print(f"grpc_test: FAILED: the gRPC client's npm packages are missing from "
              f"{CLIENT_DIR}/node_modules: run tools/setup.sh (npm ci there)")
        return 1
    try:
        repo = make_repo(h.TMP)
        s = Server(repo, "--max-request-bytes", str(4 << 20), "--request-timeout", "60")
        try:
            if benching:
                bench(s)
                return 0
            h.timed(test_health_and_metadata, s)
            h.timed(test_infer, s)
            h.timed(test_errors, s)
            h.timed(test_client_deadline, s)
            h.timed(test_port_in_use, s, repo)
            h.timed(test_grpc_off, repo)
            h.timed(test_sigterm_drains, s)
        finally:
            s.stop()
            s.thread.join(timeout=TIMEOUT)
            reports = [line for line in s.lines if "Sanitizer" in line or "runtime error:" in line]
            check(not reports, f"sanitizer reports in the server's output: {reports[:3]}")
            if s.proc.returncode not in (0, None) or h.failures:
                print("server output:\n" + "".join(s.lines[-40:]))
    finally:
        shutil.rmtree(h.TMP, ignore_errors=True)
    print(f"grpc_test: {h.passed} checks passed, {len(h.failures)} failed")
    return 1 if h.failures else 0


if __name__ == "__main__":
    sys.exit(main())
