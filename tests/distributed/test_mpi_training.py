"""Data-parallel fit() under a real 2-rank mpirun (Open MPI + mpi4py) against one process fed the same batches."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import vitc
from vitc.data import DataLoader, DistributedBatchSampler, ShardSampler
from vitc.io import load_safetensors
from vitc.train import fit

HERE = os.path.dirname(__file__)
SCRIPT = os.path.join(HERE, "mpi_fit.py")
ROOT = os.path.dirname(os.path.dirname(HERE))
MPIRUN = shutil.which("mpirun")
needs_mpi = pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed (scripts/setup.sh installs openmpi-bin)")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    env.update(extra)
    return env


def _run(out, *args, ranks=2, timeout=120, env=None):
    cmd = [sys.executable, SCRIPT, "--out", str(out), *args]
    if ranks:
        cmd = [MPIRUN, "-np", str(ranks), "--oversubscribe"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or _env())


def _ok(out, *args, ranks=2):
    r = _run(out, *args, ranks=ranks)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _state(out, rank=0):
    return load_safetensors(os.path.join(out, f"rank{rank}.safetensors"), as_numpy=True)


@needs_mpi
def test_two_ranks_match_one_process_and_each_other(tmp_path):
    _ok(tmp_path / "one", ranks=0)
    r = _ok(tmp_path / "two")
    _ok(tmp_path / "again")
    one, two, two_b, again = _state(tmp_path / "one"), _state(tmp_path / "two"), _state(tmp_path / "two", 1), \
        _state(tmp_path / "again")
    assert set(one) == set(two)
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)  # float reordering only
        assert np.array_equal(two[k], two_b[k]), k  # the ranks stay identical
        assert np.array_equal(two[k], again[k]), k  # and the run is reproducible bit for bit
    # rank 0 alone logs; the epoch statistics are over all ranks (equal to the single process's)
    assert r.stdout.count("epoch 1/2") == 1
    h1, h2 = np.load(tmp_path / "one" / "history0.npy"), np.load(tmp_path / "two" / "history1.npy")
    np.testing.assert_allclose(h2, h1, rtol=1e-5)


@needs_mpi
def test_batchnorm_buffers_are_averaged_and_resume_is_exact(tmp_path):
    ck = tmp_path / "ck"
    _ok(tmp_path / "full", "--bn")
    a, b = _state(tmp_path / "full"), _state(tmp_path / "full", 1)
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # running stats averaged before eval: equal on both ranks
    _ok(tmp_path / "part", "--bn", "--epochs", "1", "--checkpoint-dir", str(ck))
    assert sorted(os.listdir(ck)) == ["ckpt-000001", "latest"]  # written once, by rank 0
    _ok(tmp_path / "resumed", "--bn", "--checkpoint-dir", str(ck), "--resume")
    for rank in (0, 1):
        c = _state(tmp_path / "resumed", rank)
        for k in a:
            assert np.array_equal(a[k], c[k]), (rank, k)


@needs_mpi
def test_world_size_that_does_not_divide_the_batch_is_refused(tmp_path):
    r = _run(tmp_path, "--batch", "7")
    assert r.returncode != 0
    assert "world size 2 does not divide the batch size 7" in r.stderr


@needs_mpi
@pytest.mark.parametrize("how", ["hang", "die"])
def test_a_failed_rank_ends_the_job(tmp_path, how):
    t0 = time.monotonic()
    r = _run(tmp_path, "--fail", how, timeout=90, env=_env(VITC_DIST_TIMEOUT="3"))
    assert r.returncode != 0
    assert time.monotonic() - t0 < 60
    if how == "hang":  # rank 0 waits in a collective, its watchdog (running: the GIL is released) aborts
        assert "vitc.distributed: rank 0 of 2 waited more than 3 s" in r.stderr, r.stderr


def test_mpi_missing_names_the_package(monkeypatch):
    import vitc.distributed.context as ctx
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(ctx, "_context", None)
    with pytest.raises(RuntimeError, match="pip install mpi4py"):
        ctx.init()
    with pytest.raises(RuntimeError, match="openmpi-bin"):
        fit(vitc.nn.Linear(2, 2), [], [], None, None, 0, distributed=True)


def test_distributed_sampler_splits_the_single_process_batches():
    class DS:
        images = np.arange(23, dtype=np.float32)[:, None]
        labels = np.arange(23)

        def __len__(self):
            return 23

        def __getitem__(self, i):
            return self.images[i], self.labels[i]

    one = DataLoader(DS(), batch_size=6, shuffle=True, seed=5, prefetch=0, to_tensor=None)
    for epoch in (0, 3):
        one.set_epoch(epoch)
        batches = [y for _, y in one]
        shards = []
        for rank in range(3):
            loader = DataLoader(DS(), batch_size=2, sampler=DistributedBatchSampler(23, 6, 3, rank, seed=5), prefetch=0, to_tensor=None)
            loader.set_epoch(epoch)  # passed on to the sampler
            shards.append(list(loader))
        assert all(len(s) == 3 for s in shards)  # the short last batch (5 samples) is not divisible by 3
        for k in range(3):
            assert np.array_equal(np.concatenate([shards[r][k][1] for r in range(3)]), batches[k])
    s = DistributedBatchSampler(23, 6, 1, 0, seed=5)
    assert len(s) == 23  # kept when the world size divides it
    with pytest.raises(ValueError, match="does not divide the batch size"):
        DistributedBatchSampler(23, 6, 4, 0)
    with pytest.raises(ValueError, match="rank must be < num_replicas"):
        DistributedBatchSampler(23, 6, 2, 2)
    assert sorted(i for r in range(3) for i in ShardSampler(10, 3, r)) == list(range(10))
