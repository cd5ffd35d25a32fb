#!/usr/bin/python3
"""`tandem serve` reloading models while requests run, on a free loopback port.

  reload_test.py path/to/tandem path/to/models

--model-control poll: a new version, a changed config, a broken version, a new and a removed
model folder are picked up by the next scan while a client sends requests without pause, and not
one of them fails. --model-control explicit: the repository index, load and unload. Triton's
version_policy: several versions served side by side. The harness (Server, check, requests) is
serve_test.py's. Every loop is bounded in count and every wait in time.
"""
import json
import os
import shutil
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_test as h  # noqa: E402  (reads the same argv: tandem, models)

check = h.check
POLL = 0.3  # --repository-poll-secs
LSTM_IN = [("input_ids", np.array([[1, 2, 3, 4]], dtype=np.int64))]


def place(repo, name, version, src="lstm_tiny", config=None):
    d = os.path.join(repo, name, str(version))
    os.makedirs(d, exist_ok=True)
    # Copy to a temporary name and rename: a poll must never see half a file.
    shutil.copy(os.path.join(h.MODELS, src, "model.onnx"), os.path.join(d, ".model.tmp"))
    os.replace(os.path.join(d, ".model.tmp"), os.path.join(d, "model.onnx"))
    if config is not None:
        write_config(repo, name, config)


def write_config(repo, name, config):
    path = os.path.join(repo, name, "config.json")
    with open(path + ".tmp", "w") as f:
        json.dump(config, f)
    os.replace(path + ".tmp", path)


def infer(s, model, version=None):
    body, headers = h.json_request(LSTM_IN)
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    status, hdrs, data = s.request("POST", path, body, headers)
    doc = json.loads(data) if data else {}
    return status, doc


def wait_for(what, cond, timeout=None):
    """Polls cond() (bounded) until it is true; records a failure naming `what` if it never is."""
    deadline = time.time() + (timeout or h.TIMEOUT)
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    check(False, f"timed out waiting for {what}")
    return False


def index(s):
    status, _, body = s.request("POST", "/v2/repository/index", b"")
    check(status == 200, f"repository index: {status} {body[:200]}")
    return {m["name"]: m for m in json.loads(body)}


class Client:
    """Sends requests to `model` one after another (at most 5000) until stopped; records each
    status and the version that answered."""

    def __init__(self, s, model):
        self.s, self.model = s, model
        self.results = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        for _ in range(5000):
            if self.stop.is_set():
                return
            try:
                status, doc = infer(self.s, self.model)
                self.results.append((status, doc.get("model_version"), doc.get("error")))
            except Exception as e:  # a dropped connection is a failure too
                self.results.append((0, None, repr(e)))

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=h.TIMEOUT)
        return self.results


def test_poll(repo_root):
    repo = os.path.join(repo_root, "poll")
    place(repo, "lstm", 1)
    place(repo, "gone", 1)
    s = h.Server(repo, "--model-control", "poll", "--repository-poll-secs", str(POLL))
    try:
        client = Client(s, "lstm")
        wait_for("the first answers", lambda: len(client.results) >= 5)

        # A new, higher version: served once built, the old one answering until then.
        place(repo, "lstm", 2)
        wait_for("version 2 to answer",
                 lambda: any(v == "2" for _, v, _ in client.results[-3:]))
        check(infer(s, "lstm", 1)[0] == 404, "version 1 is no longer served after the reload")

        # A broken version 3: the reload fails, version 2 keeps serving, the index says why.
        os.makedirs(os.path.join(repo, "lstm", "3"))
        with open(os.path.join(repo, "lstm", "3", "model.onnx"), "wb") as f:
            f.write(b"not a model")
        wait_for("the failed reload in the index",
                 lambda: "3" in index(s)["lstm"].get("reason", ""))
        entry = index(s)["lstm"]
        check(entry["state"] == "READY" and entry.get("version") == "2",
              f"a failed reload keeps version 2 serving: {entry}")
        shutil.rmtree(os.path.join(repo, "lstm", "3"))

        # A changed config.json reloads too (version_policy all: 1 and 2 side by side).
        write_config(repo, "lstm", {"version_policy": {"all": {}}})
        wait_for("versions 1 and 2 side by side", lambda: infer(s, "lstm", 1)[0] == 200)
        status, doc = s.get_json("/v2/models/lstm")
        check(status == 200 and doc["versions"] == ["1", "2"], f"metadata lists both: {doc}")
        status, doc = infer(s, "lstm", 1)
        check(status == 200 and doc["model_version"] == "1", f"version 1 answers: {status} {doc}")

        # A new folder is loaded; a removed one unloaded.
        place(repo, "added", 7, src="gru_tiny")
        shutil.rmtree(os.path.join(repo, "gone"))
        wait_for("the new model", lambda: s.request("GET", "/v2/models/added/ready")[0] == 200)
        wait_for("the removed model to go", lambda: infer(s, "gone")[0] == 404)
        status, doc = infer(s, "gone")
        check("unknown model 'gone'" in doc.get("error", ""), f"404 names the model: {doc}")

        results = client.finish()
        bad = [r for r in results if r[0] != 200]
        check(len(results) >= 20 and not bad,
              f"{len(results)} requests during reloads, {len(bad)} failed: {bad[:3]}")
        print(f"poll: {len(results)} requests during 4 reloads, {len(bad)} failed; versions seen "
              f"{sorted(set(v for _, v, _ in results))}", flush=True)
        check(s.request("GET", "/v2/health/ready")[0] == 200, "ready after the reloads")
        # Explicit load/unload is refused in poll mode, with the flag named.
        status, _, body = s.request("POST", "/v2/repository/models/lstm/unload", b"")
        check(status == 400 and b"--model-control explicit" in body, f"unload in poll mode: {body}")
    finally:
        check(s.stop() == 0, "the poll server exits 0 on SIGTERM")


def test_explicit(repo_root):
    repo = os.path.join(repo_root, "explicit")
    place(repo, "lstm", 1, config={"version_policy": {"specific": {"versions": [1]}}})
    place(repo, "lstm", 2)
    place(repo, "gru", 1, src="gru_tiny")
    s = h.Server(repo, "--model-control", "explicit")
    try:
        ix = index(s)
        check(ix["lstm"]["state"] == "READY" and ix["lstm"]["version"] == "1",
              f"specific policy serves version 1: {ix['lstm']}")
        client = Client(s, "lstm")
        wait_for("the first answers", lambda: len(client.results) >= 3)
        write_config(repo, "lstm", {})  # back to the default policy: the highest version
        status, _, body = s.request("POST", "/v2/repository/models/lstm/load", b"")
        check(status == 200, f"load: {status} {body}")
        wait_for("version 2 to answer", lambda: any(v == "2" for _, v, _ in client.results[-3:]))
        results = client.finish()
        bad = [r for r in results if r[0] != 200]
        check(not bad, f"{len(results)} requests during an explicit reload, {len(bad)} failed")

        status, _, body = s.request("POST", "/v2/repository/models/gru/unload", b"")
        check(status == 200, f"unload: {status} {body}")
        check(infer(s, "gru")[0] == 404, "an unloaded model answers 404")
        check(index(s)["gru"]["state"] == "UNAVAILABLE", "the index shows it unloaded")
        check(s.request("GET", "/v2/health/ready")[0] == 200,
              "an unloaded model does not make the server unready")
        status, _, body = s.request("POST", "/v2/repository/models/gru/unload", b"")
        check(status == 404, f"unloading twice: {status} {body}")
        status, _, body = s.request("POST", "/v2/repository/models/gru/load", b"")
        check(status == 200 and infer(s, "gru")[0] == 200, f"loaded again: {status} {body}")

        for name, want in [("nope", 404), ("..", 400), ("a%2Fb", 404)]:
            status, _, body = s.request("POST", f"/v2/repository/models/{name}/load", b"")
            check(status == want and b"error" in body, f"load {name}: {status} {body}")
        os.makedirs(os.path.join(repo, "broken", "1"))
        with open(os.path.join(repo, "broken", "1", "model.onnx"), "wb") as f:
            f.write(b"\x08")
        status, _, body = s.request("POST", "/v2/repository/models/broken/load", b"")
        check(status == 400 and b"failed to load model 'broken'" in body,
              f"a model that does not build: {status} {body}")
        check(index(s)["broken"]["state"] == "UNAVAILABLE", "the index shows it unavailable")
        check(infer(s, "lstm")[0] == 200, "the others keep serving")
    finally:
        check(s.stop() == 0, "the explicit server exits 0 on SIGTERM")


def main():
    try:
        for test in (test_poll, test_explicit):
            start = time.time()
            test(h.TMP)
            print(f"{test.__name__}: {time.time() - start:.1f} s", flush=True)
    finally:
        shutil.rmtree(h.TMP, ignore_errors=True)
    print(f"reload_test: {h.passed} checks passed, {len(h.failures)} failed")
    return 1 if h.failures else 0


if __name__ == "__main__":
    sys.exit(main())
