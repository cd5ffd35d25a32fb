#!/usr/bin/env python3
"""Soak benchmark of tandem.ParallelPredictor under worker faults (not a CI test).

Builds a ParallelPredictor with default settings (only the model and --devices are given) and
sends --requests requests, --in-flight at a time (submit() futures). Each request's inputs are
drawn, from a fixed seed, out of a small pool of input sets whose single-process tandem.Model
outputs were computed first; every output is compared with them. Meanwhile a random worker
(its pid from the predictor's stats) is SIGKILLed every --kill-every requests and SIGSTOPped
every --stop-every requests. A stopped worker is never continued: the runner must see it as hung,
kill it and restart it; if it does not, the soak shows it (requests lost or late).

At the end it reports requests ok / lost / wrong / errors, restarts, wall time, throughput and
latency p50/p99, and checks that finalize() left nothing behind: no child process of this one
(stopped ones included), the fd count back to its start, no memfd or /dev/shm mapping in
/proc/self/maps and no new /dev/shm file. The exit status is 1 if anything was lost, wrong,
failed or leaked, 2 if the soak itself could not run.

Run with Debian's interpreter and the build tree's package:

    PYTHONPATH=build/python /usr/bin/python3 tools/soak.py
    PYTHONPATH=build/python /usr/bin/python3 tools/soak.py --requests 200 --stop-every 0
    PYTHONPATH=build/python /usr/bin/python3 tools/soak.py --model resnet_tiny --kill-every 10

Workers run $TANDEM_WORKER_BINARY, else the build tree's bin/tandem beside the package.
"""
import argparse
import collections
import gc
import os
import random
import signal
import sys
import threading
import time
import traceback

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", default="sd_unet_tiny",
                   help="a model name in models/, a folder holding model.onnx, or an .onnx file")
    p.add_argument("--devices", default="cpu:0,cpu:1", help="the predictor's devices")
    p.add_argument("--requests", type=int, default=1000, help="requests to send")
    p.add_argument("--in-flight", type=int, default=4, help="requests submitted and unanswered")
    p.add_argument("--kill-every", type=int, default=50,
                   help="SIGKILL a random worker after every N requests sent (0: never)")
    p.add_argument("--stop-every", type=int, default=100,
                   help="SIGSTOP a random worker after every N requests sent, never continued "
                   "(0: never)")
    p.add_argument("--pool", type=int, default=6, help="distinct input sets requests draw from")
    p.add_argument("--max-batch", type=int, default=4,
                   help="input sets have batch sizes 1..N (cycled), so shards vary")
    p.add_argument("--sequence", type=int, default=16,
                   help="size of symbolic dims other than the batch (text models)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and of the faults")
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance vs single-process")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance vs single-process")
    p.add_argument("--request-timeout", type=float, default=300.0,
                   help="seconds a request may take before it counts as lost (the runner's "
                   "default hang deadline is well below)")
    p.add_argument("--finalize-timeout", type=float, default=300.0,
                   help="seconds finalize() may take before the soak reports it hung")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    a = p.parse_args(argv)
    for name in ("requests", "in_flight", "pool", "max_batch", "sequence"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("kill_every", "stop_every"):
        if getattr(a, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    return a


def model_path(arg):
    for candidate in (arg, os.path.join(arg, "model.onnx"),
                      os.path.join(ROOT, "models", arg, "model.onnx")):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise SystemExit(f"soak: no model at '{arg}' (a name in models/, a folder or an .onnx file)")


def import_tandem():
    try:
        import tandem  # noqa: F401
    except ImportError:  # the build tree's package, as the tests find it
        sys.path.insert(0, os.path.join(ROOT, "build", "python"))
        import tandem  # noqa: F401
    if "TANDEM_WORKER_BINARY" not in os.environ:
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(tandem.__file__)))
        worker = os.path.join(os.path.dirname(pkg), "bin", "tandem")
        if os.access(worker, os.X_OK):
            os.environ["TANDEM_WORKER_BINARY"] = worker
    return tandem


def make_pool(tandem, model, args):
    """--pool input sets (batch 1..--max-batch) and their single-process outputs."""
    rng = np.random.default_rng(args.seed)
    infos = model.get_inputs()
    pool = []
    for k in range(args.pool):
        batch = 1 + k % args.max_batch
        arrays = []
        for info in infos:
            shape = [d if d >= 0 else (batch if i == 0 else args.sequence)
                     for i, d in enumerate(info.shape)]
            dt = info.dtype.numpy
            if np.issubdtype(dt, np.floating):
                a = rng.standard_normal(shape).astype(dt)
            elif dt == np.bool_:
                a = rng.integers(0, 2, shape).astype(dt)
            else:  # ids: small values every vocabulary has
                a = rng.integers(0, 10, shape).astype(dt)
            arrays.append(a)
        refs = [t.get_data_to_numpy().copy() for t in model.predict(arrays)]
        pool.append((arrays, refs))
    return pool


# ---------------------------------------------------------------------------------------------
# What this process holds: descendants, fds, shared-memory mappings.

def descendants(root):
    """{pid: state} of every process below `root` (zombies and stopped ones included)."""
    children = collections.defaultdict(list)
    states = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        states[int(name)] = fields[0]
        children[int(fields[1])].append(int(name))
    out, pending = {}, [root]
    while pending:
        for c in children.get(pending.pop(), []):
            out[c] = states.get(c, "?")
            pending.append(c)
    return out


def open_fds():
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the listing's own fd, closed by now
    return fds


def shm_mappings():
    with open("/proc/self/maps") as f:
        return sorted({line.split(None, 5)[5].strip() for line in f
                       if len(line.split(None, 5)) == 6 and
                       ("memfd:" in line or "/dev/shm/" in line)})


def shm_files():
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def snapshot():
    return {"fds": open_fds(), "maps": shm_mappings(), "shm": shm_files()}


def leaks(before, after, children):
    """What `after` holds that `before` did not, as lines."""
    out = []
    if children:
        out.append("child processes left: " +
                   ", ".join(f"{pid} ({state})" for pid, state in sorted(children.items())))
    new_fds = {fd: t for fd, t in after["fds"].items() if before["fds"].get(fd) != t}
    if len(after["fds"]) != len(before["fds"]) or new_fds:
        out.append(f"fds: {len(before['fds'])} at start, {len(after['fds'])} now" +
                   ("; new: " + ", ".join(f"{fd} -> {t}" for fd, t in sorted(new_fds.items()))
                    if new_fds else ""))
    new_maps = [m for m in after["maps"] if m not in before["maps"]]
    if new_maps:
        out.append("shared-memory mappings left: " + ", ".join(new_maps))
    new_shm = sorted(after["shm"] - before["shm"])
    if new_shm:
        out.append("new /dev/shm files: " + ", ".join(new_shm))
    return out


# ---------------------------------------------------------------------------------------------

def pick_worker(predictor, rng, exclude):
    """A random running worker's pid (not one already stopped), or None."""
    pids = [d["pid"] for d in predictor.stats()["devices"]
            if d["up"] and d["pid"] > 0 and d["pid"] not in exclude]
    return rng.choice(pids) if pids else None


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))]


class Progress:
    def __init__(self, total, quiet):
        self.total, self.quiet = total, quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, c, restarts, start, final=False):
        """restarts: a function (stats() is only asked when a line is printed)."""
        now = time.monotonic()
        if self.quiet or (not final and now - self.last < (0.5 if self.tty else 10.0)):
            return
        self.last = now
        restarts = restarts()
        done = c["ok"] + c["wrong"] + c["errors"] + c["lost"]
        rate = done / max(now - start, 1e-9)
        line = (f"[{done:>{len(str(self.total))}}/{self.total}] ok {c['ok']} wrong {c['wrong']} "
                f"errors {c['errors']} lost {c['lost']} | kills {c['kills']} stops {c['stops']} "
                f"restarts {restarts} | {rate:.1f} req/s")
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def total_restarts(predictor):
    try:
        return sum(d["restarts"] for d in predictor.stats()["devices"])
    except Exception:  # noqa: BLE001 - stats of a broken predictor: report what we can
        return -1


def run(args):
    tandem = import_tandem()
    path = model_path(args.model)
    rng = random.Random(args.seed)

    print(f"soak: {path} on {args.devices}, {args.requests} requests, {args.in_flight} in flight, "
          f"SIGKILL every {args.kill_every or 'never'}, SIGSTOP every {args.stop_every or 'never'}, "
          f"pool of {args.pool}, seed {args.seed}", flush=True)
    model = tandem.Model()
    model.build_from_file(path, tandem.ModelType.ONNX)
    t0 = time.monotonic()
    pool = make_pool(tandem, model, args)
    del model
    gc.collect()
    print(f"references: {len(pool)} input sets in {time.monotonic() - t0:.1f} s", flush=True)

    before = snapshot()
    me = os.getpid()
    counts = dict(ok=0, wrong=0, errors=0, lost=0, kills=0, stops=0, skipped_faults=0)
    first_problems = []
    latencies = []
    stopped = set()

    def problem(text):
        if len(first_problems) < 10:
            first_problems.append(text)

    p = tandem.ParallelPredictor(path, args.devices)  # default settings
    t_build = time.monotonic()
    p.build()
    print(f"built {len(p.stats()['devices'])} workers in {time.monotonic() - t_build:.1f} s",
          flush=True)

    progress = Progress(args.requests, args.quiet)
    inflight = collections.deque()  # (request index, pool index, submit time, future)
    sent = 0
    start = time.monotonic()
    while sent < args.requests or inflight:
        while sent < args.requests and len(inflight) < args.in_flight:
            k = rng.randrange(len(pool))
            t = time.monotonic()
            try:
                inflight.append((sent, k, t, p.submit(pool[k][0])))
            except Exception as e:  # noqa: BLE001 - a refused submit is a failed request
                counts["errors"] += 1
                problem(f"request {sent}: submit failed: {e}")
            sent += 1
            for every, sig, key in ((args.kill_every, signal.SIGKILL, "kills"),
                                    (args.stop_every, signal.SIGSTOP, "stops")):
                if every and sent % every == 0 and sent < args.requests:
                    pid = pick_worker(p, rng, stopped)
                    if pid is None:
                        counts["skipped_faults"] += 1
                        continue
                    try:
                        os.kill(pid, sig)
                        counts[key] += 1
                        if sig == signal.SIGSTOP:
                            stopped.add(pid)
                    except ProcessLookupError:
                        counts["skipped_faults"] += 1
        # Collect whatever finished; otherwise wait a little on the oldest (GIL released).
        finished = [r for r in inflight if r[3].done()]
        if not finished and inflight:  # (empty when every submit was refused)
            i, k, t, f = inflight[0]
            try:
                f.result(timeout=0.002)
            except TimeoutError:
                if time.monotonic() - t > args.request_timeout:
                    inflight.popleft()
                    counts["lost"] += 1
                    problem(f"request {i}: no answer after {args.request_timeout:.0f} s")
            except Exception:  # noqa: BLE001 - handled below, as a finished request
                pass
            finished = [r for r in inflight if r[3].done()]
        now = time.monotonic()
        for r in finished:
            inflight.remove(r)
            i, k, t, f = r
            latencies.append(now - t)
            err = f.exception(timeout=0)
            if err is not None:
                counts["errors"] += 1
                problem(f"request {i}: {type(err).__name__}: {err}")
                continue
            outs, refs = f.result(timeout=0), pool[k][1]
            bad = [j for j, (o, ref) in enumerate(zip(outs, refs))
                   if o.shape != ref.shape or not np.allclose(o, ref, atol=args.atol,
                                                              rtol=args.rtol)]
            if len(outs) != len(refs) or bad:
                counts["wrong"] += 1
                j = bad[0] if bad else 0
                diff = (float(np.max(np.abs(outs[j] - refs[j])))
                        if bad and outs[j].shape == refs[j].shape else float("nan"))
                problem(f"request {i} (input set {k}): {len(outs)} outputs, output {j} differs "
                        f"(max |diff| {diff:.3g}, shape {getattr(outs[j], 'shape', None)})")
            else:
                counts["ok"] += 1
            del outs
        progress.show(counts, lambda: total_restarts(p), start)
    wall = time.monotonic() - start
    # Drop every reference to a future: its result buffers (shared memory) would stay mapped.
    finished = r = f = None  # noqa: F841
    restarts = total_restarts(p)
    progress.show(counts, lambda: restarts, start, final=True)
    stats = p.stats()
    latencies_ms = [x * 1000 for x in latencies]

    # finalize() must return (a runner that waits on a stopped worker forever would hang here).
    done = threading.Event()
    fin_error = []

    def finalize():
        try:
            p.finalize()
        except Exception as e:  # noqa: BLE001 - reported
            fin_error.append(e)
        done.set()

    t_fin = time.monotonic()
    threading.Thread(target=finalize, daemon=True).start()
    finalize_hung = not done.wait(args.finalize_timeout)
    fin_s = time.monotonic() - t_fin
    gc.collect()
    after = snapshot()
    children = descendants(me)
    leaked = leaks(before, after, children)

    n = args.requests
    print()
    print(f"requests: {n}  ok {counts['ok']}  lost {counts['lost']}  wrong {counts['wrong']}  "
          f"errors {counts['errors']}")
    print(f"faults: {counts['kills']} SIGKILL, {counts['stops']} SIGSTOP"
          + (f", {counts['skipped_faults']} skipped (no running worker)"
             if counts["skipped_faults"] else "") + f"; restarts {restarts}")
    print(f"wall {wall:.1f} s  throughput {n / wall:.2f} req/s  "
          f"latency p50 {percentile(latencies_ms, 50):.1f} ms  "
          f"p99 {percentile(latencies_ms, 99):.1f} ms  max {max(latencies_ms, default=0):.1f} ms")
    print(f"predictor: requests {stats['requests']} failed {stats['failed_requests']} "
          f"shards re-run {stats['shards_rerun']}")
    for d in stats["devices"]:
        print(f"  {d['device']} worker {d['worker']}: pid {d['pid']} "
              f"{'up' if d['up'] else 'DOWN'} restarts {d['restarts']} items {d['items']}"
              + (f" last error: {d['last_error']}" if d["last_error"] else ""))
    for text in first_problems:
        print(f"  problem: {text}")
    if finalize_hung:
        print(f"finalize: did not return within {args.finalize_timeout:.0f} s")
    elif fin_error:
        print(f"finalize: raised {type(fin_error[0]).__name__}: {fin_error[0]}")
    else:
        print(f"finalize: {fin_s:.2f} s")
    print("clean after finalize: " + ("yes" if not leaked else "NO"))
    for line in leaked:
        print(f"  {line}")

    failed = (counts["ok"] != n or counts["lost"] or counts["wrong"] or counts["errors"]
              or leaked or finalize_hung or fin_error)
    print("RESULT: " + ("FAIL" if failed else "PASS"), flush=True)

    # Leave nothing behind ourselves, whatever the runner did.
    for pid in descendants(me):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if finalize_hung:
        os._exit(1)  # the finalize thread is stuck in C++; do not wait for it at exit
    return 1 if failed else 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the soak could not run at all
        traceback.print_exc()
        print(f"soak: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
