"""Run by tests/distributed/test_mpi_training.py, alone or under mpirun: fit() a small model on fixed
random data and save each rank's final state (rank<r>.safetensors) in --out."""
import argparse
import os
import sys
import time

import numpy as np

import vitc
from vitc import nn, optim
from vitc.data import DataLoader
from vitc.io import save_safetensors
from vitc.train import fit


class Arrays:
    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.images = rng.standard_normal((n, 12)).astype(np.float32)
        self.labels = (self.images[:, :3].sum(1) > 0).astype(np.int64) + (self.images[:, 3] > 0.5)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


class HangOrDie:
    """Callback: at the end of epoch 1, on rank ``rank``, sleep for a long time or exit abruptly."""

    def __init__(self, rank, how):
        self.rank, self.how = rank, how

    def __call__(self, record):
        from vitc.distributed import launched_rank
        if launched_rank() == self.rank:
            if self.how == "hang":
                time.sleep(600)
            os._exit(7)
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--bn", action="store_true")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fail", choices=["hang", "die"], default=None)
    p.add_argument("--fail-rank", type=int, default=1)
    args = p.parse_args()
    vitc.manual_seed(0)
    vitc.set_num_threads(1)
    norm = nn.BatchNorm1d(16) if args.bn else nn.LayerNorm(16)
    model = nn.Sequential(nn.Linear(12, 16), norm, nn.GELU(), nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    train = DataLoader(Arrays(args.samples, 1), batch_size=args.batch, shuffle=True, seed=3, to_tensor=vitc.from_numpy)
    test = DataLoader(Arrays(13, 2), batch_size=4, to_tensor=vitc.from_numpy)
    callbacks = [HangOrDie(args.fail_rank, args.fail)] if args.fail else []
    hist = fit(model, train, test, opt, nn.CrossEntropyLoss(), args.epochs, callbacks=callbacks,
               checkpoint_dir=args.checkpoint_dir, resume=args.resume, progress=False,
               log=lambda s: print(s, flush=True))
    from vitc.distributed import launched_rank
    rank = launched_rank()
    os.makedirs(args.out, exist_ok=True)
    save_safetensors(model.state_dict(), os.path.join(args.out, f"rank{rank}.safetensors"))
    np.save(os.path.join(args.out, f"history{rank}.npy"),
            np.array([hist["train_loss_sum"], hist["test_accuracy"]], dtype=np.float64))
    return 0


if __name__ == "__main__":
    sys.exit(main())
