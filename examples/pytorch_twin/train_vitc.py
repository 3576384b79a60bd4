"""The vitc twin of train_torch.py: the same script with `torch` renamed `vitc` and nothing else
(tests/test_pytorch_twin.py checks that and runs both).
Usage: python train_vitc.py [N_IMAGES] [EPOCHS]"""
import gzip
import sys

import numpy as np
import vitc
from vitc import nn
from vitc.utils.data import DataLoader, TensorDataset

N = int(sys.argv[1]) if len(sys.argv) > 1 else 60000
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 2


def idx(name, header):  # an IDX file of Debian's dataset-fashion-mnist
    with gzip.open(f"/usr/share/datasets/fashion-mnist/{name}-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=header)


x = (idx("train-images-idx3", 16).reshape(-1, 1, 28, 28)[:N] / 255.0).astype(np.float32)
y = idx("train-labels-idx1", 8)[:N].astype(np.int64)
vitc.manual_seed(0)
loader = DataLoader(TensorDataset(vitc.from_numpy(x), vitc.from_numpy(y)), batch_size=64, shuffle=True)
model = nn.Sequential(nn.Conv2d(1, 32, 4, stride=4), nn.GELU(), nn.Flatten(), nn.Linear(32 * 49, 10))
opt = vitc.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
sched = vitc.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=EPOCHS * len(loader))
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
ema = [p.detach().clone() for p in model.parameters()]
start = [p.detach().clone() for p in model.parameters()]
for epoch in range(EPOCHS):
    model.train()
    for xb, yb in loader:
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with vitc.no_grad():
            for e, p in zip(ema, model.parameters()):
                e *= 0.99
                e += 0.01 * p
    model.eval()
    with vitc.no_grad():
        accuracy = (model(vitc.from_numpy(x)).argmax(1).numpy() == y).mean()
        moved = max(float((e - s).abs().max()) for e, s in zip(ema, start))
    print(f"epoch {epoch + 1}: last loss {loss.item():.3f}, train accuracy {accuracy:.3f}, ema moved {moved:.4f}")
