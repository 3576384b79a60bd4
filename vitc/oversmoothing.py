"""Losses against over-smoothing (Gong et al., "Vision Transformers with Patch Diversification",
arXiv 2104.12753 §4, eqs. 3–5; reference code
ChengyueGongR/PatchVisionTransformer deit/models.py and deit/engine.py, self-declared incomplete).

h_i: last-layer patch tokens after the final norm (prefix tokens left out); e_i: first-layer patch
representation (the patch embedding's output), detached.

- ``cosine_penalty(h)``: mean pairwise cosine of an image's patch tokens, batch mean (eq. 3). The
  paper does not say whether the final norm comes first; vitc applies it after (the tokens the
  head reads), docs/choices.md.
- ``patch_contrastive_loss(e, h)``: −(1/n)Σ_i log σ(e_iᵀh_i − e_iᵀh̄), h̄ the mean patch token (eq. 4).
  variant='code': the reference's three-way softmax with negatives = mean of the other patches and mean of the other patches of a k×k neighbourhood
  (zero padded, so border neighbourhoods shrink toward 0), log(p + 1e-8).
- ``patch_mix(images, labels, ...)``: CutMix with the box on the patch grid (pixels move patch by
  patch), partner B−1−b; per-patch labels and the image's mixed label.
- ``patch_mixing_loss(logits, patch_labels)``: mean cross-entropy of a shared patch classifier on
  every patch (eq. 5). ``region_mixing_loss``: the reference's variant, the classifier on each
  region's mean token, weighted by the region's area, KL against the region's target.
- ``OverSmoothing(model, cos=, cons=, mix=)``: wraps any registry model, adds the patch head and the
  first-layer capture, and ``loss(images, labels)`` returns the total and its parts.
"""
from dataclasses import dataclass

import numpy as np

import vitc as _v
from vitc import nn
from vitc._checks import expect_int, expect_number, expect_tensor

__all__ = ["cosine_penalty", "patch_contrastive_loss", "PatchMix", "patch_mix", "patch_mixing_loss",
           "region_mixing_loss", "OverSmoothing", "CONTRASTIVE_VARIANTS", "MIX_VARIANTS"]

CONTRASTIVE_VARIANTS = ("paper", "code")
MIX_VARIANTS = ("patch", "region_mean")


def _tokens(h, who, name):
    expect_tensor(h, who, name)
    if h.ndim != 3 or h.dtype is not _v.float32:
        raise ValueError(f"{who}: {name} must be float32 patch tokens (B, n, D), got {h.dtype!r} {tuple(h.shape)}")
    if h.shape[1] < 2:
        raise ValueError(f"{who}: {name} has {h.shape[1]} patch token(s); the loss compares patches and needs >= 2")
    return h


def _softplus(x):
    # log(1 + e^x) = max(x, 0) + log(1 + e^−|x|), finite for any x
    return _v.relu(x) + _v.log(_v.exp(-_v.abs(x)) + 1.0)


def cosine_penalty(h):
    """CosSim of each image's patch tokens h (B, n, D), batch mean. O(nD): with ĥ_i = h_i/max(‖h_i‖, 1e-8)
    and s = Σ_i ĥ_i, Σ_{i≠j} ĥ_iᵀĥ_j = ‖s‖² − Σ_i‖ĥ_i‖²; autograd gives ∂/∂ĥ_i = 2(s − ĥ_i)/(n(n−1))."""
    h = _tokens(h, "cosine_penalty", "h")
    b, n, _ = h.shape
    u = h / _v.clamp(_v.sqrt((h * h).sum(dim=2, keepdim=True)), min=1e-8)
    s = u.sum(dim=1)
    pairs = (s * s).sum(dim=1) - (u * u).sum(dim=(1, 2))
    return pairs.sum() * (1.0 / (b * n * (n - 1)))


def _neighbourhood_mean_matrix(grid, kernel):
    """(n, n) constant A with (A·h)_i = the k×k zero-padded average around patch i
    (torch's avg_pool2d, stride 1, padding k//2, count_include_pad)."""
    gh, gw = grid
    r, c = np.divmod(np.arange(gh * gw), gw)
    near = (np.abs(r[:, None] - r[None, :]) <= kernel // 2) & (np.abs(c[:, None] - c[None, :]) <= kernel // 2)
    return near.astype(np.float32) / np.float32(kernel * kernel)


def patch_contrastive_loss(e, h, variant="paper", grid=None, kernel=7):
    """Patch-wise contrastive loss between the first-layer representation e (B, n, D), treated as a
    constant, and the last-layer tokens h (B, n, D), mean over patches and images.
    'paper': softplus(e_iᵀh̄ − e_iᵀh_i), h̄ = (1/n)Σ_j h_j, gradient through h̄ too.
    'code' (reference deit/models.py): −log(softmax([e_iᵀh_i, e_iᵀh_glob, e_iᵀh_loc])_0 + 1e-8) with
    h_glob = mean of the other n−1 patches and h_loc = mean of the other patches of the k×k
    neighbourhood on the grid (gh, gw) (zero padding counted, as avg_pool2d); grid defaults to square."""
    who = "patch_contrastive_loss"
    h = _tokens(h, who, "h")
    e = _tokens(e, who, "e")
    if tuple(e.shape) != tuple(h.shape):
        raise ValueError(f"{who}: e {tuple(e.shape)} and h {tuple(h.shape)} must have one shape (B, n, D)")
    if variant not in CONTRASTIVE_VARIANTS:
        raise ValueError(f"{who}: variant must be one of {CONTRASTIVE_VARIANTS}, got {variant!r}")
    e = e.detach()
    b, n, _ = h.shape
    pos = (e * h).sum(dim=2)                                              # (B, n)
    if variant == "paper":
        neg = (e * h.mean(dim=1, keepdim=True)).sum(dim=2)
        return _softplus(neg - pos).mean()
    grid = _grid(grid, n, who)
    k = expect_int(kernel, who, "kernel", 1)
    if k % 2 == 0:
        raise ValueError(f"{who}: kernel must be odd (a neighbourhood centred on the patch), got {k}")
    glob = (h.sum(dim=1, keepdim=True) - h) * (1.0 / (n - 1))             # mean of the other patches
    local = _v.matmul(_v.from_numpy(_neighbourhood_mean_matrix(grid, k)), h)
    local = (local - h * (1.0 / (k * k))) * (k * k / (k * k - 1.0))
    logits = _v.stack([pos, (e * glob).sum(dim=2), (e * local).sum(dim=2)], dim=2)
    p0 = _v.softmax(logits, dim=2)[:, :, 0]
    return -_v.log(p0 + 1e-8).mean()


def _grid(grid, n, who):
    if grid is None:
        side = int(round(n ** 0.5))
        grid = (side, side)
    if not (isinstance(grid, (tuple, list)) and len(grid) == 2 and all(isinstance(g, int) and g > 0 for g in grid)):
        raise ValueError(f"{who}: grid must be a pair of positive ints (rows, cols), got {grid!r}")
    if grid[0] * grid[1] != n:
        raise ValueError(f"{who}: a {grid[0]}x{grid[1]} token grid has {grid[0] * grid[1]} cells but there are "
                         f"{n} patch tokens")
    return tuple(grid)


@dataclass
class PatchMix:
    images: object           # (B, C, H, W) mixed images (vitc Tensor)
    patch_labels: object     # (B, n) int64: the label of the image each patch came from
    targets: object          # (B, K) float32: λ·onehot(y_b) + (1−λ)·onehot(y_partner)
    own: np.ndarray          # (gh, gw) bool: True where a patch is the image's own
    lam: float               # fraction of own patches
    partner: np.ndarray      # (B,) partner index of each image


def _box(grid, lam, cy, cx):
    """timm's CutMix box (data/mixup.py rand_bbox, 1.0.x rounding) on the patch grid: side ⌊g·√(1−λ)⌋
    centred at (cy, cx), clipped."""
    gh, gw = grid
    r = np.sqrt(1.0 - lam)
    hc, wc = int(gh * r), int(gw * r)
    y0, y1 = np.clip([cy - hc // 2, cy + (hc + 1) // 2], 0, gh)
    x0, x1 = np.clip([cx - wc // 2, cx + (wc + 1) // 2], 0, gw)
    return int(y0), int(y1), int(x0), int(x1)


def patch_mix(images, labels, num_classes, patch_size, draws=None):
    """Patch-aligned CutMix for the patch mixing loss (Gong et al. §4, eq. 5; CutMix's box rule on the patch grid, partner B−1−b).
    draws = (λ, cy, cx) injects the random draws (λ ∈ [0, 1], box centre on the grid); by default they
    come from vitc's RNG (λ ~ Beta(1, 1) = U(0, 1)). The box's patches come from the partner."""
    who = "patch_mix"
    expect_tensor(images, who, "images")
    expect_tensor(labels, who, "labels")
    if images.ndim != 4:
        raise ValueError(f"{who}: images must be (B, C, H, W), got {tuple(images.shape)}")
    b, _, hgt, wid = images.shape
    if b < 2:
        raise ValueError(f"{who}: batch size {b}: mixing pairs image b with image B−1−b and needs a batch of >= 2")
    if labels.dtype is not _v.int64 or tuple(labels.shape) != (b,):
        raise ValueError(f"{who}: labels must be int64 class indices of shape ({b},), got {labels.dtype!r} "
                         f"{tuple(labels.shape)}")
    k = expect_int(num_classes, who, "num_classes", 1)
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    if hgt % ph or wid % pw:
        raise ValueError(f"{who}: image size {hgt}x{wid} is not divisible by the patch size {ph}x{pw}")
    grid = (hgt // ph, wid // pw)
    if draws is None:
        u = _v.rand(3).numpy().astype(np.float64)
        draws = (float(u[0]), min(int(u[1] * grid[0]), grid[0] - 1), min(int(u[2] * grid[1]), grid[1] - 1))
    lam, cy, cx = draws
    expect_number(lam, who, "lambda", 0.0, 1.0)
    y0, y1, x0, x1 = _box(grid, lam, int(cy), int(cx))
    own = np.ones(grid, dtype=bool)
    own[y0:y1, x0:x1] = False
    partner = np.arange(b)[::-1].copy()
    img = images.detach().numpy()
    pix = np.repeat(np.repeat(own, ph, axis=0), pw, axis=1)[None, None]
    mixed = np.where(pix, img, img[partner]).astype(np.float32)
    y = labels.numpy()
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"{who}: labels must be in [0, {k}), got range [{y.min()}, {y.max()}]")
    lam = float(own.mean())
    patch_labels = np.where(own.reshape(1, -1), y[:, None], y[partner][:, None]).astype(np.int64)
    eye = np.eye(k, dtype=np.float32)
    targets = (lam * eye[y] + (1.0 - lam) * eye[y[partner]]).astype(np.float32)
    return PatchMix(_v.from_numpy(np.ascontiguousarray(mixed)), _v.from_numpy(patch_labels),
                    _v.from_numpy(targets), own, lam, partner)


def patch_mixing_loss(patch_logits, patch_labels):
    """(1/n)Σ_i H(g(h_i), y_i), batch mean: patch_logits (B, n, K), patch_labels (B, n) int64."""
    who = "patch_mixing_loss"
    expect_tensor(patch_logits, who, "patch_logits")
    expect_tensor(patch_labels, who, "patch_labels")
    if patch_logits.ndim != 3 or patch_labels.dtype is not _v.int64 or \
            tuple(patch_labels.shape) != tuple(patch_logits.shape[:2]):
        raise ValueError(f"{who}: patch_logits must be (B, n, K) and patch_labels int64 (B, n), got "
                         f"{tuple(patch_logits.shape)} and {patch_labels.dtype!r} {tuple(patch_labels.shape)}")
    b, n, k = patch_logits.shape
    return _v.cross_entropy(patch_logits.reshape(b * n, k), patch_labels.reshape(b * n))


def region_mixing_loss(h, head, masks, targets):
    """The reference's mixing loss (deit/models.py, VisionTransformer.forward): for each region r (a
    0/1 mask on the n patches, (n,)) the head classifies the region's mean token
    m_r = Σ_i mask_i h_i / (Σ mask + 1e-4), and the loss is Σ_r area_r·KL(t_r ‖ softmax(head(m_r)) + 1e-8)
    with batchmean reduction; area_r = Σ mask / n; targets[r] (B, K) soft targets of region r.
    (The reference also applies dropout 0.2 to m_r; here the caller's head may include it.)"""
    who = "region_mixing_loss"
    h = _tokens(h, who, "h")
    b, n, _ = h.shape
    if not isinstance(masks, (list, tuple)) or len(masks) != len(targets) or not masks:
        raise ValueError(f"{who}: masks and targets must be lists of one length (one per region)")
    total = None
    for r, (m, t) in enumerate(zip(masks, targets)):
        m = np.asarray(m, dtype=np.float32).reshape(-1)
        if m.size != n:
            raise ValueError(f"{who}: mask {r} has {m.size} cells but there are {n} patch tokens")
        expect_tensor(t, who, f"targets[{r}]")
        mean = _v.matmul(_v.from_numpy(m / np.float32(m.sum() + 1e-4)), h)   # (B, D)
        logp = _v.log(_v.softmax(head(mean), dim=1) + 1e-8)
        if tuple(t.shape) != tuple(logp.shape):
            raise ValueError(f"{who}: targets[{r}] has shape {tuple(t.shape)}, the head gives {tuple(logp.shape)}")
        term = _v.kl_div(logp, t, reduction="batchmean") * float(m.sum() / n)
        total = term if total is None else total + term
    return total


class OverSmoothing(nn.Module):
    """Any registry model plus what the three losses need: a patch head Linear(D, K) and hooks that
    keep the first-layer patch representation (the patch embedding's output, else the first block's
    input) and the last-layer tokens (the output of the final norm, else of the last block).

    cos, cons, mix: the weights α of ℓ_cos, ℓ_cons, ℓ_mix (0 = off; the reference adds its two with
    1.0). forward(x) is the wrapped model's forward. loss(images, labels) mixes the batch when mix > 0
    (patch_mix), runs one forward and returns (total, {'ce', 'cos', 'cons', 'mix'}); criterion(logits,
    targets) is the main loss on soft targets (B, K) (default soft-target cross-entropy; a DeiT's two
    heads each get it, averaged).
    """

    def __init__(self, model, cos=0.0, cons=0.0, mix=0.0, contrastive_variant="paper", mix_variant="patch",
                 criterion=None):
        super().__init__()
        who = "OverSmoothing"
        if not isinstance(model, nn.Module):
            raise TypeError(f"{who}: model must be a vitc.nn.Module, got {type(model).__name__}")
        self.weights = {name: expect_number(w, who, name, 0.0) for name, w in (("cos", cos), ("cons", cons),
                                                                               ("mix", mix))}
        if contrastive_variant not in CONTRASTIVE_VARIANTS:
            raise ValueError(f"{who}: contrastive_variant must be one of {CONTRASTIVE_VARIANTS}, "
                             f"got {contrastive_variant!r}")
        if mix_variant not in MIX_VARIANTS:
            raise ValueError(f"{who}: mix_variant must be one of {MIX_VARIANTS}, got {mix_variant!r}")
        self.prefix = getattr(model, "num_prefix_tokens", None)
        blocks = [m for m in model.modules() if isinstance(m, nn.TransformerBlock)]
        if self.prefix is None or not blocks or not hasattr(model, "patch_size"):
            raise ValueError(f"{who}: {type(model).__name__} has no patch tokens to work on (needs vitc.nn "
                             "TransformerBlocks, num_prefix_tokens and patch_size)")
        self.model = model
        self.contrastive_variant, self.mix_variant = contrastive_variant, mix_variant
        self.criterion = criterion
        dim = blocks[-1].norm1.weight.shape[0] if hasattr(blocks[-1].norm1, "weight") else None
        head = getattr(model, "mlp_head", None)
        self.num_classes = head.weight.shape[0] if isinstance(head, nn.Linear) else None
        if dim is None or self.num_classes is None:
            raise ValueError(f"{who}: cannot read the width and class count of {type(model).__name__}")
        self.patch_head = nn.Linear(dim, self.num_classes)
        first = getattr(model, "to_patch_embedding", None)
        last = getattr(model, "transformer", None)
        self._first_has_prefix = first is None
        first = first if first is not None else blocks[0]
        self._hooks = []
        if first is blocks[0]:
            self._hooks.append(first.register_forward_pre_hook(lambda m, args: self._keep("first", args[0])))
        else:
            self._hooks.append(first.register_forward_hook(lambda m, args, out: self._keep("first", out)))
        last = last if isinstance(last, nn.Transformer) else blocks[-1]
        self._hooks.append(last.register_forward_hook(lambda m, args, out: self._keep("last", out)))
        self._kept = {}

    @classmethod
    def wrap(cls, model, talking_heads=False, **kwargs):
        """``OverSmoothing(model, **kwargs)``, with talking heads added to every 'mhsa' layer first when asked
        (the reference model's default; new parameters, so before building the optimizer)."""
        if talking_heads:
            for m in model.modules():
                if isinstance(m, nn.Attention) and m.attn == "mhsa":
                    m.add_talking_heads()
        return cls(model, **kwargs)

    def _keep(self, key, value):
        self._kept[key] = value[0] if isinstance(value, tuple) else value

    def forward(self, x, *args, **kwargs):
        return self.model(x, *args, **kwargs)

    def patch_tokens(self, key):
        t = self._kept.get(key)
        if t is None:
            raise RuntimeError("OverSmoothing: no forward has run")
        if key == "first" and not self._first_has_prefix:
            return t
        return t[:, self.prefix:] if self.prefix else t

    def _main_loss(self, out, targets):
        crit = self.criterion or (lambda z, t: _v.cross_entropy(z, t))
        if isinstance(out, tuple):
            return sum(crit(z, targets) for z in out) * (1.0 / len(out))
        return crit(out, targets)

    def loss(self, images, labels):
        w = self.weights
        eye = np.eye(self.num_classes, dtype=np.float32)
        mixing = w["mix"] > 0
        if mixing:
            pm = patch_mix(images, labels, self.num_classes, self.model.patch_size)
            images, targets = pm.images, pm.targets
        else:
            targets = _v.from_numpy(eye[labels.numpy()])
        out = self.model(images)
        parts = {"ce": self._main_loss(out, targets)}
        total = parts["ce"]
        h = self.patch_tokens("last")
        if w["cos"] > 0:
            parts["cos"] = cosine_penalty(h)
            total = total + parts["cos"] * w["cos"]
        if w["cons"] > 0:
            grid = tuple(s // p for s, p in zip(self.model.image_size, self.model.patch_size))
            parts["cons"] = patch_contrastive_loss(self.patch_tokens("first"), h, self.contrastive_variant, grid)
            total = total + parts["cons"] * w["cons"]
        if mixing:
            if self.mix_variant == "patch":
                parts["mix"] = patch_mixing_loss(self.patch_head(h), pm.patch_labels)
            else:
                y = labels.numpy()
                parts["mix"] = region_mixing_loss(h, self.patch_head, [pm.own, ~pm.own],
                                                  [_v.from_numpy(eye[y]), _v.from_numpy(eye[y[pm.partner]])])
            total = total + parts["mix"] * w["mix"]
        self._kept = {}
        return total, parts

    def extra_repr(self):
        return (f"cos={self.weights['cos']}, cons={self.weights['cons']}, mix={self.weights['mix']}, "
                f"contrastive_variant={self.contrastive_variant!r}, mix_variant={self.mix_variant!r}")
