#!/usr/bin/python3
"""`tandem serve` end to end on a free loopback port, with Debian's python3 (http.client).

  serve_test.py path/to/tandem path/to/models

Every client loop is bounded in count and every wait in time. Checks: health and metadata; infer
with JSON and binary tensors against `tandem run` on the same inputs; malformed requests -> 400,
unknown model or version -> 404, an oversized body -> 413; dynamic batching merges concurrent
requests (the batch-size histogram) and splits them back correctly; unequal unbatched inputs
do not merge; a worker killed with SIGKILL under load costs no request; config errors name the
file and the field; SIGTERM with requests in flight answers every one and exits 0.
"""
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import onnx
from onnx import numpy_helper

TANDEM = os.path.abspath(sys.argv[1])
MODELS = os.path.abspath(sys.argv[2])
TMP = tempfile.mkdtemp(prefix="serve_test_")
# Seconds, for every single request and wait; more for a sanitizer build (SERVE_TEST_TIMEOUT).
TIMEOUT = float(os.environ.get("SERVE_TEST_TIMEOUT", "60"))
failures = []
passed = 0

DTYPES = {"FP32": np.float32, "INT64": np.int64, "FP16": np.float16, "INT32": np.int32,
          "BOOL": np.bool_, "FP64": np.float64, "UINT8": np.uint8}


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what, flush=True)


def read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t.name, numpy_helper.to_array(t)


def write_pb(path, name, array):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(array, name).SerializeToString())


def tandem_run(model_dir, named_inputs, tag):
    """Outputs of a direct `tandem run` of model_dir/model.onnx on these inputs, in order."""
    work = os.path.join(TMP, "run_" + tag)
    os.makedirs(work, exist_ok=True)
    paths = []
    for i, (name, array) in enumerate(named_inputs):
        p = os.path.join(work, f"input_{i}.pb")
        write_pb(p, name, array)
        paths.append(p)
    subprocess.run([TANDEM, "run", "-m", os.path.join(model_dir, "model.onnx"), "--inputs",
                    ",".join(paths), "--output-dir", work], check=True, timeout=TIMEOUT,
                   stdout=subprocess.DEVNULL)
    outs = []
    i = 0
    while os.path.exists(os.path.join(work, f"output_{i}.pb")):
        outs.append(read_pb(os.path.join(work, f"output_{i}.pb")))
        i += 1
    return outs


class Server:
    def __init__(self, repo, *extra):
        self.proc = subprocess.Popen(
            [TANDEM, "serve", "--model-repository", repo, "--host", "127.0.0.1",
             "--http-port", "0", "--grpc-port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.port = None
        self.metrics_port = None
        deadline = time.time() + TIMEOUT
        ready = threading.Event()

        def reader():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
                if m:
                    self.metrics_port = int(m.group(1))
                if "tandem serve: ready" in line:
                    ready.set()
            ready.set()

        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        ready.wait(max(0, deadline - time.time()))
        if self.port is None or self.proc.poll() is not None:
            raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def request(self, method, path, body=None, headers=None, port=None):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def get_json(self, path):
        status, _, body = self.request("GET", path)
        return status, json.loads(body) if body else None

    def metrics(self):
        # The metrics port has threads of its own: it answers while every HTTP thread is busy.
        status, _, body = self.request("GET", "/metrics", port=self.metrics_port)
        assert status == 200
        return body.decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def metric(text, name, **labels):
    """The value of one sample; labels must match those given (others are ignored)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def json_request(named_inputs, outputs=None, binary_output=False, req_id=None):
    doc = {"inputs": [{"name": n, "shape": list(a.shape),
                       "datatype": {np.float32: "FP32", np.int64: "INT64"}[a.dtype.type],
                       "data": a.flatten().tolist()} for n, a in named_inputs]}
    if outputs is not None:
        doc["outputs"] = outputs
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    if req_id:
        doc["id"] = req_id
    return json.dumps(doc).encode(), {"Content-Type": "application/json"}


def binary_request(named_inputs, binary_output=True):
    doc = {"inputs": [{"name": n, "shape": list(a.shape),
                       "datatype": {np.float32: "FP32", np.int64: "INT64"}[a.dtype.type],
                       "parameters": {"binary_data_size": a.nbytes}} for n, a in named_inputs],
           "parameters": {"binary_data_output": binary_output}}
    header = json.dumps(doc).encode()
    body = header + b"".join(np.ascontiguousarray(a).tobytes() for _, a in named_inputs)
    return body, {"Inference-Header-Content-Length": str(len(header)),
                  "Content-Type": "application/octet-stream"}


def decode_response(headers, body):
    """{name: array} from a JSON or binary infer response."""
    length = headers.get("Inference-Header-Content-Length")
    header = body if length is None else body[:int(length)]
    doc = json.loads(header)
    offset = 0 if length is None else int(length)
    out = {}
    for o in doc["outputs"]:
        dt = DTYPES[o["datatype"]]
        if "data" in o:
            out[o["name"]] = np.array(o["data"], dtype=dt).reshape(o["shape"])
        else:
            n = o["parameters"]["binary_data_size"]
            out[o["name"]] = np.frombuffer(body[offset:offset + n], dtype=dt).reshape(o["shape"])
            offset += n
    return doc, out


def close(a, b, atol=1e-5):
    return a.shape == b.shape and a.dtype == b.dtype and np.allclose(a, b, atol=atol, rtol=0)


def infer(server, model, body, headers):
    status, h, data = server.request("POST", f"/v2/models/{model}/infer", body, headers)
    return status, h, data


def make_repo():
    repo = os.path.join(TMP, "repo")
    configs = {
        # Merges up to 8 items, waiting up to 100 ms: concurrent requests surely meet.
        "resnet": ("resnet_tiny", {"devices": "cpu:0,cpu:1", "workers": 1, "mode": "processes",
                                   "max_batch_size": 8,
                                   "dynamic_batching": {"max_queue_delay_us": 100000}}),
        "unet": ("sd_unet_tiny", {"devices": "cpu:0,cpu:1", "max_batch_size": 4,
                                  "dynamic_batching": {"max_queue_delay_us": 20000,
                                                       "preferred_batch_size": [2, 4]}}),
        # No config.json: one device, no batching. Threads mode is covered by bert.
        "gpt": ("gpt_tiny", None),
        "bert": ("bert_tiny", {"devices": 1, "mode": "threads"}),
    }
    for name, (src, config) in configs.items():
        os.makedirs(os.path.join(repo, name, "1"))
        shutil.copy(os.path.join(MODELS, src, "model.onnx"), os.path.join(repo, name, "1"))
        if config is not None:
            with open(os.path.join(repo, name, "config.json"), "w") as f:
                json.dump(config, f)
    # A second, higher version of gpt: version 2 is the one served.
    os.makedirs(os.path.join(repo, "gpt", "2"))
    shutil.copy(os.path.join(MODELS, "gpt_tiny", "model.onnx"), os.path.join(repo, "gpt", "2"))
    with open(os.path.join(repo, "README.txt"), "w") as f:
        f.write("files beside the model folders are ignored\n")
    return repo


def test_metadata(s):
    status, _, _ = s.request("GET", "/v2/health/live")
    check(status == 200, "live is 200")
    # Models with dynamic batching ran every batch size once before saying ready; gpt has none.
    warmed = "".join(line for line in s.lines if "warmed up" in line)
    check("'unet' version 1 warmed up batch sizes 1..4" in warmed and "'gpt'" not in warmed,
          f"warm-up of the batching models only: {warmed!r}")
    status, _, _ = s.request("GET", "/v2/health/ready")
    check(status == 200, "ready is 200")
    status, doc = s.get_json("/v2")
    check(status == 200 and doc["name"] == "tandem" and "binary_tensor_data" in doc["extensions"],
          f"server metadata: {doc}")
    status, doc = s.get_json("/v2/models/unet")
    check(status == 200 and doc["versions"] == ["1"] and doc["platform"] == "onnx", f"unet: {doc}")
    check([(i["name"], i["datatype"], i["shape"]) for i in doc["inputs"]] ==
          [("sample", "FP32", [-1, 4, 64, 64]), ("timestep", "FP32", [1]),
           ("encoder_hidden_states", "FP32", [-1, 77, 1024])], f"unet inputs: {doc['inputs']}")
    check(doc["outputs"] == [{"name": "out_sample", "datatype": "FP32", "shape": [-1, 4, 64, 64]}],
          f"unet outputs: {doc['outputs']}")
    status, doc = s.get_json("/v2/models/gpt/versions/2")
    check(status == 200 and doc["versions"] == ["2"], f"gpt serves its highest version: {doc}")
    for path in ["/v2/models/unet/ready", "/v2/models/unet/versions/1/ready"]:
        status, _, _ = s.request("GET", path)
        check(status == 200, f"{path} is 200")


def test_statistics(s):
    status, doc = s.get_json("/v2/models/stats")
    names = sorted(m["name"] for m in doc["model_stats"]) if status == 200 else []
    check(names == ["bert", "gpt", "resnet", "unet"], f"every model's statistics: {status} {names}")
    status, doc = s.get_json("/v2/models/resnet/versions/1/stats")
    check(status == 200 and len(doc["model_stats"]) == 1, f"one version's statistics: {doc}")
    st = doc["model_stats"][0]
    check(st["ready"] is True and len(st["devices"]) == 2
          and all(d["state"] == "up" for d in st["devices"])
          and st["inference_stats"]["success"]["count"] >= 1
          and st["inference_stats"]["compute_infer"]["ns"] > 0,
          f"resnet's statistics after requests: {st}")
    for path in ["/v2/models/nope/stats", "/v2/models/resnet/versions/9/stats"]:
        status, doc = s.get_json(path)
        check(status == 404 and "error" in doc, f"GET {path}: want 404, got {status} {doc}")


def test_infer_matches_tandem_run(s):
    cases = [("resnet", "resnet_tiny", 1), ("unet", "sd_unet_tiny", 0), ("bert", "bert_tiny", 1),
             ("gpt", "gpt_tiny", 1)]
    for name, src, ds in cases:
        folder = os.path.join(MODELS, src, f"test_data_set_{ds}")
        inputs = [read_pb(os.path.join(folder, f)) for f in sorted(os.listdir(folder))
                  if f.startswith("input_")]
        ref = tandem_run(os.path.join(MODELS, src), inputs, name)
        for kind in ["json", "binary", "json-in-binary-out"]:
            if kind == "json":
                body, headers = json_request(inputs, req_id="r-42")
            elif kind == "binary":
                body, headers = binary_request(inputs)
            else:
                body, headers = json_request(inputs, binary_output=True)
            status, h, data = infer(s, name, body, headers)
            if status != 200:
                check(False, f"{name} {kind}: status {status}: {data[:300]!r}")
                continue
            doc, outs = decode_response(h, data)
            check(doc["model_name"] == name and doc["model_version"] in ("1", "2"),
                  f"{name} {kind}: response names the model: {doc.get('model_name')}")
            if kind == "json":
                check(doc.get("id") == "r-42", f"{name}: the request id comes back")
            for out_name, out_array in ref:
                check(out_name in outs and close(outs[out_name], out_array),
                      f"{name} {kind}: output {out_name} matches tandem run")
    # Only the requested output, as binary.
    folder = os.path.join(MODELS, "bert_tiny", "test_data_set_0")
    inputs = [read_pb(os.path.join(folder, f"input_{i}.pb")) for i in range(2)]
    body, headers = json_request(inputs, outputs=[{"name": "pooled",
                                                   "parameters": {"binary_data": True}}])
    status, h, data = infer(s, "bert", body, headers)
    doc, outs = decode_response(h, data) if status == 200 else ({}, {})
    check(status == 200 and list(outs) == ["pooled"] and "Inference-Header-Content-Length" in h,
          f"bert: one requested binary output: {status} {list(outs)}")


def test_bad_requests(s):
    x = np.zeros((1, 3, 64, 64), np.float32)
    good, _ = json_request([("input", x)])
    bad_cases = [
        ("not JSON", b"{\"inputs\": [", {}),
        ("not an object", b"[1,2]", {}),
        ("no inputs", b"{}", {}),
        ("unknown field", b'{"inputs": [], "bogus": 1}', {}),
        ("wrong shape", json_request([("input", np.zeros((1, 3, 8, 8), np.float32))])[0], {}),
        ("wrong dtype", good.replace(b'"FP32"', b'"INT64"'), {}),
        ("unknown datatype", good.replace(b'"FP32"', b'"FP33"'), {}),
        ("BYTES", good.replace(b'"FP32"', b'"BYTES"'), {}),
        ("too few elements", json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 64, 64],
                                                     "datatype": "FP32", "data": [1, 2]}]}).encode(),
         {}),
        ("string element", json.dumps({"inputs": [{"name": "input", "shape": [1, 2],
                                                   "datatype": "FP32", "data": [1, "a"]}]}).encode(),
         {}),
        ("negative dim", json.dumps({"inputs": [{"name": "input", "shape": [-1, 3],
                                                 "datatype": "FP32", "data": []}]}).encode(), {}),
        ("huge shape", json.dumps({"inputs": [{"name": "input", "shape": [2**62, 2**62],
                                               "datatype": "FP32", "data": []}]}).encode(), {}),
        ("missing input", json.dumps({"inputs": [{"name": "other", "shape": [1],
                                                  "datatype": "FP32", "data": [1]}]}).encode(), {}),
        ("duplicate input", json.dumps({"inputs": [json.loads(good)["inputs"][0]] * 2}).encode(), {}),
        ("unknown output", json.dumps({"inputs": json.loads(good)["inputs"],
                                       "outputs": [{"name": "nope"}]}).encode(), {}),
        ("deep nesting", b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", '
                         b'"data": ' + b"[" * 5000 + b"]" * 5000 + b"}]}", {}),
        ("header length past the body", good, {"Inference-Header-Content-Length": "999999"}),
        ("header length not a number", good, {"Inference-Header-Content-Length": "12abc"}),
        ("binary size mismatch", binary_request([("input", x)])[0].replace(
            b'"binary_data_size": 49152', b'"binary_data_size": 49148'), None),
        ("binary data left over", None, None),
    ]
    for what, body, headers in bad_cases:
        if what == "binary size mismatch":
            headers = binary_request([("input", x)])[1]
            headers["Inference-Header-Content-Length"] = str(len(body) - x.nbytes)
        if what == "binary data left over":
            body, headers = binary_request([("input", x)])
            body += b"\0\0\0\0"
        status, _, data = infer(s, "resnet", body, headers)
        try:
            message = json.loads(data).get("error", "")
        except ValueError:
            message = ""
        check(status == 400 and message, f"{what}: want 400 with a message, got {status} {data[:200]!r}")
    ints = json.dumps({"inputs": [
        {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2.5]},
        {"name": "attention_mask", "shape": [1, 2], "datatype": "INT64", "data": [1, 1]}]})
    status, _, _ = infer(s, "bert", ints.encode(), {})
    check(status == 400, f"a fraction in INT64 data: want 400, got {status}")
    seq = json.dumps({"inputs": [
        {"name": "input_ids", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]},
        {"name": "attention_mask", "shape": [1, 5], "datatype": "INT64", "data": [1] * 5}]})
    status, _, data = infer(s, "bert", seq.encode(), {})
    check(status == 400 and b"sequence" in data,
          f"symbolic dim 'sequence' of two sizes: want 400, got {status} {data[:200]!r}")
    # A bad value only a worker can see (a token id past the embedding table, found by Gather in
    # a worker process): still the client's error, 400, and the worker keeps serving.
    for model in ("gpt", "bert"):
        doc = {"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64",
                           "data": [1, 10**12]}]}
        if model == "bert":
            doc["inputs"].append({"name": "attention_mask", "shape": [1, 2], "datatype": "INT64",
                                  "data": [1, 1]})
        status, _, data = infer(s, model, json.dumps(doc).encode(), {})
        check(status == 400 and b"out of range" in data,
              f"{model}: a token id past the table: want 400, got {status} {data[:300]!r}")
        doc["inputs"][0]["data"] = [1, 2]
        status, _, data = infer(s, model, json.dumps(doc).encode(), {})
        check(status == 200, f"{model} serves after a bad token id: {status} {data[:200]!r}")
    big = json.dumps({"inputs": [{"name": "input", "shape": [1], "datatype": "FP32",
                                  "data": [1e39]}]})
    status, _, data = infer(s, "resnet", big.encode(), {})
    check(status == 400 and b"out of range" in data, f"1e39 as FP32: want 400, got {status}")
    for path in ["/v2/models/nope/infer", "/v2/models/resnet/versions/7/infer",
                 "/v2/models/..%2F..%2Fetc/infer"]:
        status, _, data = s.request("POST", path, good, {})
        check(status == 404 and b"error" in data, f"POST {path}: want 404, got {status}")
    for path in ["/v2/models/nope", "/v2/models/nope/ready", "/v2/nothing"]:
        status, _, _ = s.request("GET", path)
        check(status == 404, f"GET {path}: want 404, got {status}")
    # Long names go through the routes' regular expressions: refused, no crash.
    for length in (1000, 8000, 20000):
        status, _, _ = s.request("POST", "/v2/models/" + "a" * length + "/infer", good, {})
        check(status in (404, 414), f"a {length}-character model name: got {status}")
    # Larger than --max-request-bytes (4 MiB here).
    status, _, _ = infer(s, "resnet", b"{" + b" " * (5 << 20) + b"}", {})
    check(status == 413, f"oversized body: want 413, got {status}")
    text = s.metrics()
    check((metric(text, "tandem_inference_failures_total", model="resnet") or 0) >= len(bad_cases),
          "bad requests count as failures in /metrics")


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})?'
                    r" (\S+)$")


def test_metrics_format(s):
    """/metrics in Prometheus's text format: HELP and TYPE before each family, well-formed
    samples, histograms whose buckets are cumulative and end in +Inf = _count."""
    text = s.metrics()
    check(text.endswith("\n"), "metrics end with a newline")
    types = {}
    buckets = {}  # (family, labels without le) -> [(le, value)]
    counts = {}
    problems = []
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4:
                problems.append(line)
            elif parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE.match(line)
        if not m:
            problems.append(line)
            continue
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        try:
            v = float(value)
        except ValueError:
            problems.append(line)
            continue
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if family not in types and name not in types:
            problems.append("no TYPE before: " + line)
        if name.endswith("_bucket"):
            le = re.search(r'le="([^"]*)"', labels).group(1)
            rest = re.sub(r',?le="[^"]*"', "", labels)
            buckets.setdefault((family, rest), []).append((float(le), v))
        elif name.endswith("_count") and types.get(family) == "histogram":
            counts[(family, labels)] = v
    check(not problems, f"malformed metric lines: {problems[:3]}")
    for key, rows in buckets.items():
        les = [le for le, _ in rows]
        values = [v for _, v in rows]
        check(les == sorted(les) and les[-1] == float("inf") and values == sorted(values) and
              counts.get(key) == values[-1], f"histogram {key}: {rows}")
    check(types.get("tandem_batch_size") == "histogram" and
          types.get("tandem_device_restarts_total") == "counter", f"metric types: {types}")
    check(len(buckets) >= 12, f"3 histograms for each of 4 models: {len(buckets)}")


def test_client_hangs_up(s):
    # Clients that send a request and reset the connection before the answer: the server writes
    # into closed sockets (EPIPE, not a SIGPIPE that would end it) and goes on serving.
    folder = os.path.join(MODELS, "sd_unet_tiny", "test_data_set_0")
    inputs = [read_pb(os.path.join(folder, f"input_{i}.pb")) for i in range(3)]
    body, headers = binary_request(inputs, binary_output=False)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST /v2/models/unet/infer HTTP/1.1\r\nHost: x\r\n{head}"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    for _ in range(8):
        with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as c:
            c.sendall(request)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(1)
    check(s.proc.poll() is None, f"the server outlives clients that hang up: {s.proc.returncode}")
    status, _, _ = infer(s, "unet", *binary_request(inputs))
    check(status == 200, f"and answers the next request: {status}")


def test_batching(s):
    rng = np.random.default_rng(7)
    n = 8
    inputs = [rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32) for _ in range(n)]
    refs = [tandem_run(os.path.join(MODELS, "resnet_tiny"), [("input", x)], f"batch{i}")[0][1]
            for i, x in enumerate(inputs)]
    before = s.metrics()
    barrier = threading.Barrier(n, timeout=TIMEOUT)

    def one(i):
        body, headers = binary_request([("input", inputs[i])])
        barrier.wait()
        status, h, data = infer(s, "resnet", body, headers)
        return status, (decode_response(h, data)[1]["logits"] if status == 200 else data)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    for i, (status, out) in enumerate(results):
        check(status == 200 and close(out, refs[i]), f"merged request {i} gets its own result")
    after = s.metrics()
    batches = (metric(after, "tandem_batch_size_count", model="resnet") -
               metric(before, "tandem_batch_size_count", model="resnet"))
    ones = (metric(after, "tandem_batch_size_bucket", model="resnet", le="1") -
            metric(before, "tandem_batch_size_bucket", model="resnet", le="1"))
    items = (metric(after, "tandem_batch_size_sum", model="resnet") -
             metric(before, "tandem_batch_size_sum", model="resnet"))
    print(f"batching: {n} concurrent requests ran as {batches:.0f} batches ({ones:.0f} of size 1)")
    check(items == n and batches < n and ones < batches,
          f"concurrent requests merge: {batches} batches, {ones} of one item, {items} items")

    # Unbatched inputs that differ (timestep) must not merge; equal ones may.
    folder = os.path.join(MODELS, "sd_unet_tiny", "test_data_set_0")
    base = [read_pb(os.path.join(folder, f"input_{i}.pb")) for i in range(3)]
    variants = []
    for k in range(4):
        t = np.array([float(10 * (k % 2) + 1)], np.float32)
        variants.append([base[0], ("timestep", t), base[2]])
    refs = [tandem_run(os.path.join(MODELS, "sd_unet_tiny"), v, f"unet{k}")[0][1]
            for k, v in enumerate(variants[:2])]
    barrier = threading.Barrier(len(variants), timeout=TIMEOUT)

    def unet(k):
        body, headers = binary_request(variants[k])
        barrier.wait()
        status, h, data = infer(s, "unet", body, headers)
        return status, (decode_response(h, data)[1]["out_sample"] if status == 200 else data)

    with concurrent.futures.ThreadPoolExecutor(len(variants)) as pool:
        results = list(pool.map(unet, range(len(variants))))
    for k, (status, out) in enumerate(results):
        check(status == 200 and close(out, refs[k % 2]),
              f"unet request {k} (timestep {variants[k][1][1][0]}) gets its own timestep's result")


def server_children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"worker" in cmd:
            kids.append((int(entry), cmd))
    return kids


def processes_mentioning(text):
    """Pids whose command line mentions `text` (a worker outlives its server as an orphan)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def test_worker_killed(s):
    # Kill one of resnet's workers while 4 clients send 40 requests: none may fail.
    victims = [p for p, cmd in server_children(s.proc.pid)
               if any(b"resnet" in c for c in cmd)]
    check(len(victims) == 2, f"resnet has 2 worker processes: {victims}")
    x = np.random.default_rng(3).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    ref = tandem_run(os.path.join(MODELS, "resnet_tiny"), [("input", x)], "kill")[0][1]
    before = s.metrics()
    total, clients = 40, 4
    done = []
    lock = threading.Lock()

    def client(c):
        results = []
        for i in range(total // clients):
            body, headers = binary_request([("input", x)])
            status, h, data = infer(s, "resnet", body, headers)
            ok = status == 200 and close(decode_response(h, data)[1]["logits"], ref)
            results.append((status, ok, data[:200] if status != 200 else b""))
            with lock:
                done.append(1)
        return results

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, c) for c in range(clients)]
        deadline = time.time() + TIMEOUT
        while len(done) < 6 and time.time() < deadline:
            time.sleep(0.01)
        if victims:
            os.kill(victims[0], signal.SIGKILL)
        results = [r for f in futures for r in f.result(timeout=TIMEOUT * 2)]
    bad = [r for r in results if not r[1]]
    check(len(results) == total and not bad, f"worker killed under load: failed {bad[:3]}")
    after = s.metrics()
    restarts = sum(metric(after, "tandem_device_restarts_total", model="resnet", device=d) or 0
                   for d in ("cpu:0", "cpu:1"))
    print(f"worker killed: {len(results)} requests, {len(bad)} failed, restarts {restarts:.0f}")
    check(restarts >= 1, "the killed worker's restart shows in /metrics")
    check(metric(after, "tandem_inference_failures_total", model="resnet") ==
          metric(before, "tandem_inference_failures_total", model="resnet"),
          "no failure counted for the killed worker")
    # Ready again once the worker is back (bounded wait).
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if metric(s.metrics(), "tandem_device_up", model="resnet", device="cpu:0") == 1 and \
                metric(s.metrics(), "tandem_device_up", model="resnet", device="cpu:1") == 1:
            break
        time.sleep(0.1)
    status, _, _ = s.request("GET", "/v2/health/ready")
    check(status == 200, f"ready again after the restart: {status}")


def test_health_follows_workers(s):
    # gpt has one device: while its only worker is restarting, neither the model nor the server
    # may say ready.
    victims = [p for p, cmd in server_children(s.proc.pid) if any(b"/gpt/" in c for c in cmd)]
    check(len(victims) == 1, f"gpt has one worker process: {victims}")
    if not victims:
        return
    os.kill(victims[0], signal.SIGKILL)
    seen = None
    deadline = time.time() + 10
    while time.time() < deadline and seen is None:
        model = s.request("GET", "/v2/models/gpt/ready")[0]
        server = s.request("GET", "/v2/health/ready")[0]
        if model == 400 and server == 400:
            seen = metric(s.metrics(), "tandem_device_up", model="gpt", device="cpu:0")
            status, stats = s.get_json("/v2/models/gpt/stats")
            devices = stats["model_stats"][0]["devices"] if status == 200 else []
            check(status == 200 and stats["model_stats"][0]["ready"] is False and devices
                  and devices[0]["state"] != "up",
                  f"the model's statistics show the worker not up: {status} {stats}")
        time.sleep(0.002)
    check(seen is not None, "model and server not ready while the only worker restarts")
    status, _, _ = s.request("GET", "/v2/models/resnet/ready")
    check(status == 200, "another model stays ready meanwhile")
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and s.request("GET", "/v2/health/ready")[0] != 200:
        time.sleep(0.02)
    check(s.request("GET", "/v2/models/gpt/ready")[0] == 200, "gpt ready again after its restart")


def test_request_timeout():
    # Every request takes longer than 1 ms: each gets 504, and the server still stops cleanly.
    repo = os.path.join(TMP, "timeout")
    os.makedirs(os.path.join(repo, "unet", "1"))
    shutil.copy(os.path.join(MODELS, "sd_unet_tiny", "model.onnx"), os.path.join(repo, "unet", "1"))
    s = Server(repo, "--request-timeout", "0.001")
    try:
        folder = os.path.join(MODELS, "sd_unet_tiny", "test_data_set_1")
        inputs = [read_pb(os.path.join(folder, f"input_{i}.pb")) for i in range(3)]
        body, headers = binary_request(inputs)
        status, _, data = infer(s, "unet", body, headers)
        check(status == 504 and b"--request-timeout" in data, f"timeout: want 504, got {status}")
    finally:
        code = s.stop()
    check(code == 0, f"stops cleanly after a timed-out request: {code}")


def test_sigterm_while_building():
    # SIGTERM between "listening" and "ready": the model being built finishes, the server stops
    # with status 0 and leaves no worker behind.
    repo = os.path.join(TMP, "early")
    for name in ("a", "b"):
        os.makedirs(os.path.join(repo, name, "1"))
        shutil.copy(os.path.join(MODELS, "sd_unet_tiny", "model.onnx"),
                    os.path.join(repo, name, "1"))
    proc = subprocess.Popen([TANDEM, "serve", "--model-repository", repo, "--host", "127.0.0.1",
                             "--http-port", "0", "--grpc-port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    check("listening" in first and proc.returncode == 0 and "stopped" in out,
          f"SIGTERM while building: status {proc.returncode}, output {first + out!r}")
    check(not processes_mentioning(repo + "/"), "no worker left after SIGTERM while building")


def test_sigterm_drains(s):
    folder = os.path.join(MODELS, "sd_unet_tiny", "test_data_set_0")
    inputs = [read_pb(os.path.join(folder, f"input_{i}.pb")) for i in range(3)]
    ref = tandem_run(os.path.join(MODELS, "sd_unet_tiny"), inputs, "drain")[0][1]
    # More requests than the server's HTTP threads (6): some wait for a thread at the signal,
    # accepted but not yet read, and must be answered too. Enough of them that some are surely
    # unanswered at the signal on a quiet machine too (16 all finished first once).
    n = 32
    started = metric(s.metrics(), "tandem_inference_requests_total", model="unet")

    answered_count = []

    def one(i):
        body, headers = binary_request(inputs)
        try:
            status, h, data = infer(s, "unet", body, headers)
        except (OSError, http.client.HTTPException) as e:  # closed or reset unanswered
            answered_count.append(1)
            return repr(e), False
        answered_count.append(1)
        return status, status == 200 and close(decode_response(h, data)[1]["out_sample"], ref)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        # Every HTTP thread holds a request, and the others had time to be accepted.
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            if metric(s.metrics(), "tandem_inference_requests_total", model="unet") >= started + 6:
                break
            time.sleep(0.005)
        time.sleep(0.05)
        s.proc.send_signal(signal.SIGTERM)
        in_flight = n - len(answered_count)
        results = [f.result(timeout=TIMEOUT * 2) for f in futures]
    code = s.proc.wait(timeout=TIMEOUT)
    answered = sum(1 for status, ok in results if ok)
    print(f"SIGTERM: {in_flight} of {n} requests still unanswered at the signal; {answered} "
          f"answered in all; exit status {code}")
    check(in_flight > 0, "some requests were still in flight at SIGTERM (else this tests nothing)")
    check(answered == n, f"SIGTERM answers every request in flight: {results}")
    check(code == 0, f"exit status 0 after SIGTERM, got {code}")
    s.thread.join(timeout=TIMEOUT)
    check(any("stopped" in line for line in s.lines), "the server says it stopped")
    check(not processes_mentioning(os.path.join(TMP, "repo") + "/"), "no worker process left")


def test_config_errors():
    cases = [
        ("unknown field", {"devices": "cpu:0", "max_batch": 4}, r"config\.json: field 'max_batch'"),
        ("bad value", {"workers": 0}, r"config\.json: field 'workers': must be between 1 and 64"),
        ("bad mode", {"mode": "fibers"}, r"field 'mode'"),
        ("bad device", {"devices": "gpu:x"}, r"field 'devices'"),
        ("batching without batch size", {"dynamic_batching": {}}, r"field 'dynamic_batching'"),
        ("unknown batching field", {"max_batch_size": 4, "dynamic_batching": {"delay": 1}},
         r"field 'dynamic_batching\.delay'"),
        ("preferred too large", {"max_batch_size": 4,
                                 "dynamic_batching": {"preferred_batch_size": [8]}},
         r"field 'dynamic_batching\.preferred_batch_size'"),
    ]
    for i, (what, config, pattern) in enumerate(cases):
        repo = os.path.join(TMP, f"bad{i}")
        os.makedirs(os.path.join(repo, "m", "1"))
        shutil.copy(os.path.join(MODELS, "resnet_tiny", "model.onnx"), os.path.join(repo, "m", "1"))
        with open(os.path.join(repo, "m", "config.json"), "w") as f:
            json.dump(config, f)
        r = subprocess.run([TANDEM, "serve", "--model-repository", repo, "--host", "127.0.0.1",
                            "--http-port", "0"], capture_output=True, text=True, timeout=TIMEOUT)
        check(r.returncode == 1 and re.search(pattern, r.stderr) and "m/config.json" in r.stderr,
              f"config {what}: want exit 1 and /{pattern}/, got {r.returncode}: {r.stderr.strip()}")
    # A model file that is a symlink out of the repository; a folder name that is not a name.
    outside = os.path.join(TMP, "outside.onnx")
    shutil.copy(os.path.join(MODELS, "resnet_tiny", "model.onnx"), outside)
    repo = os.path.join(TMP, "escape")
    os.makedirs(os.path.join(repo, "m", "1"))
    os.symlink(outside, os.path.join(repo, "m", "1", "model.onnx"))
    r = subprocess.run([TANDEM, "serve", "--model-repository", repo, "--http-port", "0"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    check(r.returncode == 1 and "outside" in r.stderr,
          f"symlink out of the repository: {r.returncode} {r.stderr.strip()}")
    repo = os.path.join(TMP, "badname")
    os.makedirs(os.path.join(repo, "a b", "1"))
    r = subprocess.run([TANDEM, "serve", "--model-repository", repo, "--http-port", "0"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    check(r.returncode == 1 and "not a valid model name" in r.stderr,
          f"bad model folder name: {r.returncode} {r.stderr.strip()}")
    r = subprocess.run([TANDEM, "serve", "--model-repository", TMP, "--http-port", "70000"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    check(r.returncode == 2 and "--http-port" in r.stderr, f"bad port: {r.stderr.strip()}")


def timed(test, *args):
    start = time.time()
    test(*args)
    print(f"{test.__name__}: {time.time() - start:.1f} s", flush=True)


def main():
    try:
        timed(test_config_errors)
        timed(test_request_timeout)
        timed(test_sigterm_while_building)
        repo = make_repo()
        s = Server(repo, "--max-request-bytes", str(4 << 20), "--request-timeout", "60",
                   "--http-threads", "6", "--metrics-port", "0")
        try:
            timed(test_metadata, s)
            timed(test_infer_matches_tandem_run, s)
            timed(test_bad_requests, s)
            timed(test_statistics, s)
            timed(test_client_hangs_up, s)
            timed(test_metrics_format, s)
            timed(test_batching, s)
            timed(test_worker_killed, s)
            timed(test_health_follows_workers, s)
            timed(test_sigterm_drains, s)
        finally:
            s.stop()
            s.thread.join(timeout=TIMEOUT)
            # Under a sanitizer build, its reports land in the server's output.
            reports = [line for line in s.lines
                       if "Sanitizer" in line or "runtime error:" in line]
            check(not reports, f"sanitizer reports in the server's output: {reports[:3]}")
            if s.proc.returncode not in (0, None) or failures:
                print("server output:\n" + "".join(s.lines[-40:]))
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"serve_test: {passed} checks passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
