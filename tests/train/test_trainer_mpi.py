"""python -m vitc.train under a 2-rank mpirun: rank 0 alone prints and writes, and the run equals one process's."""
import os
import shutil
import subprocess
import sys

import pytest

from trainer_helpers import ROOT, SMALL, TINY, assert_same_weights, needs_fmnist, run_main, weights

MPIRUN = shutil.which("mpirun")


@needs_fmnist
@pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed (scripts/setup.sh installs openmpi-bin)")
def test_two_ranks_equal_one_process(tmp_path):
    args = [*SMALL, *TINY, "--accum-steps", "2", "--threads", "1"]
    env = dict(os.environ, PYTHONPATH=ROOT, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    r = subprocess.run([MPIRUN, "-np", "2", "--oversubscribe", sys.executable, "-m", "vitc.train", *args,
                        "--save", str(tmp_path / "two.safetensors"), "--metrics", str(tmp_path / "m.csv")],
                       capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("epoch 1/1") == 1 and "x 2 MPI ranks" in r.stdout
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 2
    code, _, err = run_main(*args, "--save", tmp_path / "one.safetensors")
    assert code == 0, err
    assert_same_weights(weights(tmp_path / "two.safetensors"), weights(tmp_path / "one.safetensors"),
                        rtol=1e-5, atol=1e-6)
