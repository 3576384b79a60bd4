"""`python -m vitc.train` itself under a real 2-rank mpirun: one log, rank-0 checkpoints, resume, and the
same weights as one process trained on the same global batches."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from vitc.io import load_safetensors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed (scripts/setup.sh installs openmpi-bin)")
COMMON = ["--model", "vit_seed_mnist", "--dataset", "fashion-mnist", "--subset", "300", "--test-subset", "100",
          "--batch-size", "50", "--test-batch-size", "100", "--threads", "1", "--no-progress"]


def _train(*args, ranks):
    cmd = [sys.executable, "-m", "vitc.train", *COMMON, *map(str, args)]
    if ranks > 1:
        cmd = [MPIRUN, "-np", str(ranks), "--oversubscribe"] + cmd
    env = dict(os.environ, PYTHONPATH=ROOT, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_trainer_cli_under_mpirun_logs_once_checkpoints_once_and_resumes(tmp_path):
    ck = tmp_path / "ck"
    out = _train("--epochs", 1, "--checkpoint-dir", ck, ranks=2)
    assert out.count("x 2 MPI ranks") == 1 and out.count("epoch 1/1") == 1, out  # rank 0 alone prints
    assert sorted(os.listdir(ck)) == ["ckpt-000001", "latest"]  # and alone writes
    out = _train("--epochs", 2, "--checkpoint-dir", ck, "--resume", "--save", tmp_path / "two.safetensors", ranks=2)
    assert out.count("epoch 2/2") == 1 and "epoch 1/2" not in out, out  # epoch 1 came from the checkpoint
    _train("--epochs", 2, "--save", tmp_path / "one.safetensors", ranks=1)
    two = load_safetensors(str(tmp_path / "two.safetensors"), as_numpy=True)
    one = load_safetensors(str(tmp_path / "one.safetensors"), as_numpy=True)
    assert set(one) == set(two)
    for k in one:  # 2 ranks x 25 images = the single process's batch of 50, up to float reordering
        np.testing.assert_allclose(two[k], one[k], rtol=2e-4, atol=2e-5, err_msg=k)
