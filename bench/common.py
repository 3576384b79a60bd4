"""What the bench scripts share: the two model shapes issue 8's targets name and the vitc train step
built from them, so every script times the same step.

SEED is seed 004's ViT (28×28 one-channel images, patch 7, dim 64, depth 6, 8 heads of 64, MLP 128,
10 classes; batch 100, Adam). DEIT is DeiT-Tiny's shape (224×224, patch 16, dim 192, depth 12,
3 heads, MLP 768, 1000 classes; batch 32, AdamW), vitc's `vit_tiny_patch16_224` and timm's
`deit_tiny_patch16_224`.

`vitc` is imported inside the functions, so a script that puts another checkout first on sys.path
(ab.py's workers) times that checkout's build. OPS are single fused ops of those steps, forward and
backward at the step's shape (ab.py --model ffn-deit, ...), for changes too small to resolve in a
whole step on this VM.
"""
SEED = dict(image_size=28, patch_size=7, num_classes=10, dim=64, depth=6, heads=8, mlp_dim=128, pool="cls",
            channels=1, dim_head=64, dropout=0.0, emb_dropout=0.0, pos_emb="learn")
DEIT = dict(image_size=224, patch_size=16, num_classes=1000, dim=192, depth=12, heads=3, mlp_dim=768, pool="cls",
            channels=3, dim_head=64)
SHAPES = {"seed": SEED, "deit": DEIT}
BATCH = {"seed": 100, "deit": 32}


def vitc_model(model="seed", **overrides):
    """(module, optimizer) of 'seed' (ViT(**SEED, **overrides), Adam) or 'deit' (AdamW), lr 5e-4,
    weights from vitc.manual_seed(0)"""
    import vitc
    if model not in SHAPES:
        raise ValueError(f"model must be 'seed' or 'deit', got {model!r}")
    vitc.manual_seed(0)
    if model == "seed":
        m = vitc.models.ViT(**dict(SEED, **overrides))
        return m, vitc.optim.Adam(m.parameters(), lr=5e-4)
    m = vitc.models.create_model("vit_tiny_patch16_224", **overrides)
    return m, vitc.optim.AdamW(m.parameters(), lr=5e-4)


def vitc_batch(model="seed", batch=None, seed=0):
    """(images, labels) for one step: uniform [0, 1) images and random labels from numpy's seed"""
    import numpy as np

    import vitc
    cfg = SHAPES[model]
    b = batch or BATCH[model]
    rng = np.random.default_rng(seed)
    shape = (b, cfg["channels"], cfg["image_size"], cfg["image_size"])
    return (vitc.from_numpy(rng.uniform(0, 1, shape).astype(np.float32)),
            vitc.from_numpy(rng.integers(0, cfg["num_classes"], b).astype(np.int64)))


def vitc_lvvit_step(batch=128):
    """bench/lvvit_step.py's vitc step: lvvit_tiny_mnist (conv stem, aux head, MixToken with fixed
    draws), TokenLabelingLoss with dense labels, AdamW lr 1e-3; random images and Dirichlet labels"""
    import numpy as np

    import vitc
    from vitc.losses import TokenLabelingLoss
    vitc.manual_seed(0)
    m = vitc.models.create_model("lvvit_tiny_mnist", num_classes=10)
    m.train()
    opt, loss_fn = vitc.optim.AdamW(m.parameters(), lr=1e-3), TokenLabelingLoss(beta=0.5)
    rng = np.random.default_rng(0)
    x = vitc.tensor(rng.standard_normal((batch, m.channels) + m.image_size).astype(np.float32))
    y = vitc.tensor(rng.dirichlet(np.ones(10), batch).astype(np.float32))
    yt = vitc.tensor(rng.dirichlet(np.ones(10), (batch, m.num_patches)).astype(np.float32))
    draw = (0.6, m.grid_size[0] // 2, m.grid_size[1] // 2)

    def step():
        opt.zero_grad()
        loss_fn(m(x, mix_draw=draw), y, yt).backward()
        opt.step()
    return step


def vitc_train_step(model="seed", batch=None):
    """a function running one train step (zero_grad, forward, cross-entropy, backward, optimizer
    step) of `model` on one fixed batch; 'lvvit': vitc_lvvit_step"""
    import vitc
    if model == "lvvit":
        return vitc_lvvit_step(batch or 128)
    m, opt = vitc_model(model)
    x, y = vitc_batch(model, batch)

    def step():
        opt.zero_grad()
        vitc.cross_entropy(m(x), y).backward()
        opt.step()
    return step


def seed_train_steps(batch=100, lr=5e-4):
    """(vitc model, torch model, vitc step, torch step) of seed 004's ViT with the same weights and batch
    (Adam, cross-entropy): bench/vit_step.py's and bench/lvvit_step.py --with-seed's step. Needs
    torch and tests/models on sys.path."""
    import numpy as np
    import torch
    from torch_vit import TorchViT, copy_weights

    import vitc
    vitc.manual_seed(0)
    vm = vitc.models.ViT(**SEED)
    tm = copy_weights(vm, TorchViT(**SEED))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    vx, vy, tx, ty = vitc.from_numpy(x), vitc.from_numpy(y), torch.from_numpy(x), torch.from_numpy(y)
    vo, to = vitc.optim.Adam(vm.parameters(), lr=lr), torch.optim.Adam(tm.parameters(), lr=lr)

    def vstep():
        vo.zero_grad()
        vitc.cross_entropy(vm(vx), vy).backward()
        vo.step()

    def tstep():
        to.zero_grad()
        torch.nn.functional.cross_entropy(tm(tx), ty).backward()
        to.step()
    return vm, tm, vstep, tstep


OPS = ("ffn-seed", "ffn-deit", "ffn-lvvit", "attn-seed", "attn-deit", "attn-lvvit", "ln-seed", "ln-deit", "ln-lvvit")
# op shapes of models without a train step here: LV-ViT-Tiny-MNIST's blocks (batch 128, 7×7 patches
# + cls = 50 tokens, dim 64, 4 heads of 16, MLP 192; vitc.models.lvvit, bench/lvvit_step.py)
OP_SHAPES = {"lvvit": dict(batch=128, tokens=50, dim=64, heads=4, dim_head=16, mlp_dim=192)}


def vitc_op_step(name):
    """a function running one forward + backward of one block's fused op at a model's step shape:
    'ffn-*' linear_gelu_linear (what nn.FeedForward runs), 'attn-*' qkv_attention with the output
    projection (what nn.Attention runs), 'ln-*' layer_norm with weight and bias; every input requires grad"""
    import numpy as np

    import vitc
    if name not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {name!r}")
    kind, model = name.split("-")
    if model in OP_SHAPES:
        cfg = OP_SHAPES[model]
        b, t = cfg["batch"], cfg["tokens"]
    else:
        cfg = SHAPES[model]
        b, t = BATCH[model], (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
    d, inner = cfg["dim"], cfg["heads"] * cfg["dim_head"]
    rng = np.random.default_rng(0)

    def leaf(*shape, scale=1.0):
        return vitc.from_numpy((rng.standard_normal(shape) * scale).astype(np.float32)).requires_grad_()
    x, g = leaf(b, t, d), vitc.from_numpy(rng.standard_normal((b, t, d)).astype(np.float32))
    if kind == "ffn":
        f = cfg["mlp_dim"]
        ins = [x, leaf(f, d, scale=d ** -0.5), leaf(f), leaf(d, f, scale=f ** -0.5), leaf(d)]

        def fwd():
            return vitc.linear_gelu_linear(*ins)
    elif kind == "ln":
        ins = [x, leaf(d), leaf(d)]

        def fwd():
            return vitc.layer_norm(ins[0], (d,), ins[1], ins[2])
    else:
        ins = [x, leaf(3 * inner, d, scale=d ** -0.5), leaf(d, inner, scale=inner ** -0.5), leaf(d)]

        def fwd():
            return vitc.qkv_attention(ins[0], ins[1], None, cfg["heads"], proj_weight=ins[2], proj_bias=ins[3])

    def step():
        for t_ in ins:
            t_.grad = None
        fwd().backward(g)
    return step
