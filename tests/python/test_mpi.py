"""tandem.MpiPredictor from Python over mpi4py: real mpirun jobs of 2 and 3 ranks (mpi_job.py)."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PYTHON_PATH, model

tandem = pytest.importorskip("tandem")
pytestmark = pytest.mark.skipif(not tandem._tandem._have_mpi or not shutil.which("mpirun"),
                                reason="this build has no MPI (libopenmpi-dev, openmpi-bin)")

JOB = os.path.join(os.path.dirname(__file__), "mpi_job.py")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_btl_vader_single_copy_mechanism="none",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_hwloc_base_binding_policy="none")


@pytest.mark.parametrize("ranks", [2, 3])
def test_mpi_job_matches_one_model(ranks):
    r = subprocess.run(["mpirun", "-np", str(ranks), "/usr/bin/python3", JOB, PYTHON_PATH,
                        model("resnet_tiny")], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "mpi_job: ok" in r.stdout, r.stdout + r.stderr


def test_without_mpirun_is_one_rank():
    r = subprocess.run([sys.executable if sys.executable.startswith("/usr/bin") else
                        "/usr/bin/python3", JOB, PYTHON_PATH, model("resnet_tiny")], env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "mpi_job: ok" in r.stdout, r.stdout + r.stderr
