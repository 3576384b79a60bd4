"""The main job (README's first command) in vitc and in PyTorch, one after the other in one run:
the seed 004 ViT on Fashion-MNIST, Adam 5e-4, batch 100 shuffled, test batch 5000, cross-entropy,
the same initial weights, the same batches in the same order, each framework in its own process.

    .venv/bin/python bench/main_job.py --epochs 5                 # both, full data (~20 min)
    .venv/bin/python bench/main_job.py --epochs 1 --subset 6000 --out /tmp/mj   # a quick look, elsewhere

Per epoch: train wall time (data loading included, as seed 004's train_model), test wall time
(under no_grad in both), train loss (sum of batch means) and test accuracy. Writes
main_job.json and .md (atomically) into --out, bench/results/ by default:
give quick looks another --out, or they replace the committed full-run results. Run by hand, never as a test. The PyTorch
network is tests/models/torch_vit.py's reference of vitc.models.ViT (parity-tested there).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _vitc_model(seed):
    import vitc
    from vitc.models import create_model

    vitc.manual_seed(seed)
    return create_model("vit_seed_mnist")


def _loaders(args, to_tensor):
    from vitc.data import DataLoader, FashionMNIST

    train = FashionMNIST(train=True, subset=args.subset)
    test = FashionMNIST(train=False)
    return (DataLoader(train, batch_size=100, shuffle=True, seed=args.seed, to_tensor=to_tensor),
            DataLoader(test, batch_size=5000, to_tensor=to_tensor))


def run_vitc(args):
    import vitc
    from vitc import nn, optim
    from vitc.train import fit

    if args.threads:
        vitc.set_num_threads(args.threads)
    model = _vitc_model(args.seed)
    tr, te = _loaders(args, vitc.from_numpy)
    opt = optim.Adam(model.parameters(), lr=5e-4)
    h = fit(model, tr, te, opt, nn.CrossEntropyLoss(), args.epochs, progress=False, log=None)
    return {"threads": vitc.get_num_threads(), "train_time": h["train_time"], "test_time": h["test_time"],
            "train_loss_sum": h["train_loss_sum"], "test_accuracy": h["test_accuracy"]}


def run_torch(args):
    import torch

    sys.path.insert(0, os.path.join(ROOT, "tests", "models"))
    from torch_vit import TorchViT, copy_weights

    if args.threads:
        torch.set_num_threads(args.threads)
    ref = _vitc_model(args.seed)  # the same initial weights as the vitc run
    from common import SEED  # bench/common.py: the seed ViT's shape, as vit_seed_mnist builds it
    model = copy_weights(ref, TorchViT(**SEED))
    tr, te = _loaders(args, torch.from_numpy)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    out = {"threads": torch.get_num_threads(), "train_time": [], "test_time": [], "train_loss_sum": [],
           "test_accuracy": []}
    for epoch in range(args.epochs):
        tr.set_epoch(epoch)
        model.train()
        t0, total = time.perf_counter(), 0.0
        for x, y in tr:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
        out["train_time"].append(time.perf_counter() - t0)
        out["train_loss_sum"].append(total)
        model.eval()
        t0, correct, n = time.perf_counter(), 0, 0
        with torch.no_grad():
            for x, y in te:
                correct += int((model(x).argmax(1) == y).sum())
                n += len(y)
        out["test_time"].append(time.perf_counter() - t0)
        out["test_accuracy"].append(correct / n)
    return out


def _worker(args):
    res = run_vitc(args) if args.worker == "vitc" else run_torch(args)
    print("RESULT " + json.dumps(res), flush=True)


def _table(results, args):
    lines = [f"Main job: seed 004 ViT on Fashion-MNIST, {args.epochs} epochs"
             + (f", first {args.subset} training images" if args.subset else "")
             + ", Adam 5e-4, batch 100, same initial weights and batch order; each framework in its own process.",
             f"Command: `.venv/bin/python bench/main_job.py {' '.join(sys.argv[1:])}`", "",
             "| framework | threads | train time / epoch (mean) | test time / epoch (mean) | final train loss (sum) | "
             "final test accuracy |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        n = len(r["train_time"])
        lines.append(f"| {name} | {r['threads']} | {sum(r['train_time']) / n:.1f} s | {sum(r['test_time']) / n:.2f} s | "
                     f"{r['train_loss_sum'][-1]:.2f} | {100 * r['test_accuracy'][-1]:.2f} % |")
    if "vitc" in results and "torch" in results:
        v, t = results["vitc"], results["torch"]
        lines += ["", f"PyTorch/vitc train time ratio: {sum(t['train_time']) / sum(v['train_time']):.2f}×; "
                      f"test time ratio: {sum(t['test_time']) / sum(v['test_time']):.2f}×"]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--subset", type=int, default=None, help="first N training images (default: all 60000)")
    p.add_argument("--threads", type=int, default=None, help="threads for both (default: each framework's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["vitc", "torch"], default=None)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("--worker", choices=["vitc", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args)
    results = {}
    for fw in ([args.only] if args.only else ["vitc", "torch"]):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", fw, "--epochs", str(args.epochs),
               "--seed", str(args.seed)] + (["--subset", str(args.subset)] if args.subset else []) + \
              (["--threads", str(args.threads)] if args.threads else [])
        print(f"running {fw} ...", flush=True)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[fw] = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        r = results[fw]
        for e in range(len(r["train_time"])):
            print(f"  {fw} epoch {e + 1}: train {r['train_time'][e]:.1f} s, test {r['test_time'][e]:.2f} s, "
                  f"loss {r['train_loss_sum'][e]:.2f}, accuracy {100 * r['test_accuracy'][e]:.2f} %", flush=True)
    md = _table(results, args)
    print(md)
    sys.path.insert(0, ROOT)
    from vitc.io import atomic_write

    blob = json.dumps({"args": {k: v for k, v in vars(args).items() if k != "worker"}, "results": results}, indent=1)
    os.makedirs(args.out, exist_ok=True)
    for name, text in (("main_job.json", blob), ("main_job.md", md)):
        atomic_write(os.path.join(args.out, name), lambda f, text=text: _write(f, text))


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
