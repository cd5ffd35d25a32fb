"""Runs a command and prints the peak PSS and summed RSS of it and its descendants (worker
processes included), sampled every 50 ms from /proc/PID/smaps_rollup, and the median PSS while all
of its processes were up (steady state: after start-up, before shutdown). PSS charges each shared
page (a mapped .tandem file, shared memory) to its processes in equal parts, so the sum is what
the whole tree costs the host.
  /usr/bin/python3 tools/measure_pss.py tandem bench -m model.tandem --devices 2 --loops 5
"""
import os
import subprocess
import sys
import time


def children(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass  # exited meanwhile
    return out


def tree(pid):
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children(p)
    return found


def pss_rss_kib(pid):
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_pss = peak_rss = 0
    series = []  # (processes, PSS) per sample
    while proc.poll() is None:
        pids = tree(proc.pid)
        samples = [pss_rss_kib(p) for p in pids]
        series.append((len(pids), sum(s[0] for s in samples)))
        peak_pss = max(peak_pss, series[-1][1])
        peak_rss = max(peak_rss, sum(s[1] for s in samples))
        time.sleep(0.05)
    # Steady state: the median over the samples taken while the most processes were alive (the
    # workers running), which leaves out start-up (conversion, builds) and shutdown.
    most = max((n for n, _ in series), default=0)
    steady = sorted(p for n, p in series if n == most)
    median = steady[len(steady) // 2] if steady else 0
    print(f"peak PSS {peak_pss / 1024:.1f} MiB, peak RSS (summed) {peak_rss / 1024:.1f} MiB, "
          f"median PSS with all {most} processes up {median / 1024:.1f} MiB, "
          f"exit status {proc.returncode}")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
