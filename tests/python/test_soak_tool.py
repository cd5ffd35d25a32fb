"""tools/soak.py stays working: a tiny soak (SIGKILLs, no SIGSTOP) on a small model."""
import os
import subprocess
import sys

from conftest import ROOT

SOAK = os.path.join(ROOT, "tools", "soak.py")


def test_soak_tool_runs(subprocess_env):
    r = subprocess.run(
        [sys.executable, SOAK, "--model", "resnet_tiny", "--requests", "40", "--kill-every", "10",
         "--stop-every", "0", "--pool", "4", "--quiet"],
        env=subprocess_env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "requests: 40  ok 40  lost 0  wrong 0  errors 0" in out, out
    assert "faults: 3 SIGKILL" in out, out
    assert "clean after finalize: yes" in out and "RESULT: PASS" in out, out


def test_soak_tool_help():
    r = subprocess.run([sys.executable, SOAK, "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--kill-every" in r.stdout and "--stop-every" in r.stdout
