"""Why vitc's and PyTorch's runs of one cell part ways at lr 1e-2 but not at 5e-4.

Same initial weights, same batches (the first 100·STEPS images of a fixed permutation), Adam at each
rate. Printed: the largest relative parameter difference, max|a − b| / max|b| over the parameter
tensors, between (1) vitc and PyTorch, (2) vitc and vitc started from weights perturbed by ~1e-6
(relative, Gaussian). If (2) grows as fast as (1), the parting is the training dynamics amplifying
rounding, not a difference between the frameworks.

    PYTHONPATH=. python docs/results/vit_batchnorm_full/divergence.py [STEPS]
"""
import sys

import numpy as np
import torch

import vitc
from vitc.data import FashionMNIST
from vitc.experiments import vit_batchnorm as exp

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
REPORT = (1, 10, 25, 50, 100, 200, 300)


def perturbed(model, seed=1, rel=1e-6):
    rng = np.random.default_rng(seed)
    model.load_state_dict({k: vitc.tensor((v.numpy() * (1 + rel * rng.standard_normal(v.shape))).astype(np.float32))
                           for k, v in model.state_dict().items()})
    return model


def step(model, opt, x, y):
    model.train()
    opt.zero_grad()
    if isinstance(model, torch.nn.Module):
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    else:
        loss = vitc.cross_entropy(model(vitc.tensor(x)), vitc.tensor(y))
    loss.backward()
    opt.step()
    return loss.item()


def rel_diff(a, b):
    pb = {n: p.detach().numpy() for n, p in b.named_parameters()}
    return max(float(np.abs(p.detach().numpy() - pb[n]).max() / (np.abs(pb[n]).max() + 1e-12))
               for n, p in a.named_parameters())


def main():
    vitc.set_num_threads(2)
    torch.set_num_threads(2)
    train = FashionMNIST(train=True, subset=100 * STEPS)
    order = np.random.default_rng(0).permutation(len(train))
    print(f"{STEPS} Adam steps of batch 100 on Fashion-MNIST; max relative parameter difference")
    print("| model | lr | pair | " + " | ".join(f"step {s}" for s in REPORT if s <= STEPS) + " |")
    print("|---|---|---|" + "---|" * sum(s <= STEPS for s in REPORT))
    for name in ("ViT", "ViTBNFFN"):
        for lr in (5e-4, 1e-2):
            pairs = {"vitc vs torch": (exp._build(name, "vitc", 0, {}), exp._build(name, "torch", 0, {})),
                     "vitc vs vitc·(1+1e-6·N)": (exp._build(name, "vitc", 0, {}),
                                                perturbed(exp._build(name, "vitc", 0, {})))}
            for label, (a, b) in pairs.items():
                opts = [(torch.optim.Adam if isinstance(m, torch.nn.Module) else vitc.optim.Adam)(m.parameters(), lr=lr)
                        for m in (a, b)]
                cols = []
                for s in range(STEPS):
                    idx = order[s * 100:(s + 1) * 100]
                    x, y = train.images[idx].copy(), train.labels[idx].copy()
                    step(a, opts[0], x, y)
                    step(b, opts[1], x, y)
                    if s + 1 in REPORT:
                        cols.append(f"{rel_diff(a, b):.1e}")
                print(f"| {name} | {lr:g} | {label} | " + " | ".join(cols) + " |", flush=True)


if __name__ == "__main__":
    main()
