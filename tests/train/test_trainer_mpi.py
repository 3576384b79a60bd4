"""python -m vitc.train under a real 2-rank mpirun, in one launch: a run resumed from a checkpoint, with
gradient accumulation and a metrics file, logs once, checkpoints from rank 0 alone, and ends with the weights
of one process trained on the same global batches. (This module replaces tests/distributed/test_mpi_cli.py
and the former two-launch version of this test: one mpirun instead of three.)"""
import os
import shutil
import subprocess
import sys

import pytest

from trainer_helpers import ROOT, SMALL, TINY, assert_same_weights, needs_fmnist, run_main, weights

MPIRUN = shutil.which("mpirun")


@needs_fmnist
@pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed (scripts/setup.sh installs openmpi-bin)")
def test_two_ranks_resume_accumulate_log_once_and_equal_one_process(tmp_path):
    args = [*SMALL, *TINY, "--accum-steps", "2", "--threads", "1"]
    # epoch 1 in this process; both continuations start from the same checkpoint
    one_ck, two_ck = tmp_path / "one_ck", tmp_path / "two_ck"
    code, _, err = run_main(*args, "--checkpoint-dir", one_ck)
    assert code == 0, err
    shutil.copytree(one_ck, two_ck, symlinks=True)
    env = dict(os.environ, PYTHONPATH=ROOT, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    r = subprocess.run([MPIRUN, "-np", "2", "--oversubscribe", sys.executable, "-m", "vitc.train", *args,
                        "--epochs", "2", "--resume", "--checkpoint-dir", str(two_ck),
                        "--save", str(tmp_path / "two.safetensors"), "--metrics", str(tmp_path / "m.csv")],
                       capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert out.count("x 2 MPI ranks") == 1 and out.count("epoch 2/2") == 1, out  # rank 0 alone prints
    assert "epoch 1/2" not in out, out  # epoch 1 came from the checkpoint, read by both ranks
    assert sorted(os.listdir(two_ck)) == ["ckpt-000001", "ckpt-000002", "latest"]  # rank 0 alone writes
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[-1].startswith("2,"), rows  # header, epoch 1 (resumed history), epoch 2
    code, _, err = run_main(*args, "--epochs", "2", "--resume", "--checkpoint-dir", one_ck,
                            "--save", tmp_path / "one.safetensors")
    assert code == 0, err
    # 2 ranks x 25 images (2 accumulated batches per update) = the single process's batches of 50
    assert_same_weights(weights(tmp_path / "two.safetensors"), weights(tmp_path / "one.safetensors"),
                        rtol=1e-5, atol=1e-6)
