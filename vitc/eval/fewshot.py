"""Few-shot linear evaluation of frozen features (Zhai et al., "Scaling Vision Transformers",
arXiv 2106.04560 §2 and App. A; the closed-form ridge regression of big_vision's
evaluators/fewshot_lsr.py).

For each shot count s and seed, s training images per class are drawn (a seeded permutation per
class, its first s kept, so the subsets of one seed are nested), the frozen model's pre-logit
features are standardised with the subset's statistics, a constant bias column (100, so the
ridge penalty barely touches it) is appended, and the ±1 one-hot targets are regressed in closed
form, W = (XᵀX + λI)⁻¹XᵀY (or Xᵀ(XXᵀ + λI)⁻¹Y when there are fewer rows than columns). The test
prediction is argmax(X_test·W). vitc solves in float64 with numpy.linalg.solve (big_vision uses a
float32 eigendecomposition), so predictions agree except at near-ties.
"""
import numpy as np

import vitc as _v

__all__ = ["extract_features", "ridge_fewshot_fit", "fewshot_accuracy", "fewshot_evaluate"]

BIAS_COLUMN = 100.0
DEFAULT_L2 = 2.0 ** 10


def _pre_logit_module(model):
    for name in ("mlp_head", "head", "fc"):
        m = getattr(model, name, None)
        if isinstance(m, _v.nn.Module):
            return m
    raise ValueError(f"extract_features: {type(model).__name__} has no mlp_head/head/fc module to read the "
                     "pre-logit features from; pass features=callable(images) -> (B, D) instead")


def extract_features(model, images, batch_size=256, features=None):
    """Pre-logit features (N, D) float64 of ``images`` (NumPy (N, C, H, W) or a vitc Tensor), in eval mode
    under no_grad. By default they are the input of the model's classifier (its ``mlp_head``, ``head`` or
    ``fc``), captured by a forward pre-hook, so any registry model works; ``features(x) -> (B, D)`` overrides."""
    if isinstance(images, _v.Tensor):
        images = images.numpy()
    images = np.asarray(images)
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(f"extract_features: images must be a non-empty batch, got shape {images.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"extract_features: batch_size must be an int >= 1, got {batch_size!r}")
    captured, handle = [], None
    if features is None:
        head = _pre_logit_module(model)
        handle = head.register_forward_pre_hook(lambda m, args: captured.append(args[0].numpy().copy()))
    was_training = model.training
    model.eval()
    out = []
    try:
        with _v.no_grad():
            for i in range(0, len(images), batch_size):
                x = _v.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
                if features is None:
                    captured.clear()
                    model(x)
                    if len(captured) != 1:
                        raise RuntimeError(f"extract_features: the classifier of {type(model).__name__} ran "
                                           f"{len(captured)} times in one forward; pass features=")
                    f = captured[0]
                else:
                    f = features(x)
                    f = f.numpy() if isinstance(f, _v.Tensor) else np.asarray(f)
                if f.ndim != 2 or len(f) != x.shape[0]:
                    raise ValueError(f"extract_features: features must be (B, D) per batch, got {f.shape}")
                out.append(f.astype(np.float64))
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    return np.concatenate(out, axis=0)


def _labels(y, n, who):
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{who}: labels must be a 1-d array of {n} class indices, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{who}: labels must be integers, got {y.dtype}")
    return y.astype(np.int64)


def ridge_fewshot_fit(x, y, num_classes, l2_reg=DEFAULT_L2):
    """Closed-form ridge fit on features x (n, D) and labels y (n,): returns (mean, std, W) where
    W is (D+1, num_classes) for the standardised features with the bias column appended."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"ridge_fewshot_fit: features must be (n, D) with n >= 1, got {x.shape}")
    y = _labels(y, len(x), "ridge_fewshot_fit")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"ridge_fewshot_fit: labels must be in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    if not l2_reg > 0:
        raise ValueError(f"ridge_fewshot_fit: l2_reg must be > 0, got {l2_reg}")
    mean = x.mean(axis=0, keepdims=True)
    std = x.std(axis=0, keepdims=True) + 1e-5  # population std, as the reference
    xs = np.concatenate([(x - mean) / std, np.full((len(x), 1), BIAS_COLUMN)], axis=1)
    targets = 2.0 * np.eye(num_classes)[y] - 1.0
    n, d = xs.shape
    if n >= d:
        w = np.linalg.solve(xs.T @ xs + l2_reg * np.eye(d), xs.T @ targets)
    else:  # the dual form: an n×n system instead of d×d
        w = xs.T @ np.linalg.solve(xs @ xs.T + l2_reg * np.eye(n), targets)
    return mean, std, w


def fewshot_accuracy(train_x, train_y, test_x, test_y, num_classes, l2_reg=DEFAULT_L2):
    """Fit on (train_x, train_y), return the accuracy of argmax predictions on (test_x, test_y)."""
    mean, std, w = ridge_fewshot_fit(train_x, train_y, num_classes, l2_reg)
    test_x = np.asarray(test_x, dtype=np.float64)
    if test_x.ndim != 2 or test_x.shape[1] != mean.shape[1]:
        raise ValueError(f"fewshot_accuracy: test features must be (m, {mean.shape[1]}), got {test_x.shape}")
    test_y = _labels(test_y, len(test_x), "fewshot_accuracy")
    xs = np.concatenate([(test_x - mean) / std, np.full((len(test_x), 1), BIAS_COLUMN)], axis=1)
    return float(np.mean((xs @ w).argmax(axis=1) == test_y))


def fewshot_evaluate(train_features, train_labels, test_features, test_labels, shots=(1, 5, 10, 25), seeds=3,
                     l2_reg=DEFAULT_L2, classes=None):
    """Few-shot accuracies of frozen features: {'per_seed': {shots: [acc per seed]}, 'mean': {shots: acc}}.

    classes: which class indices take part (default: those present in train_labels); labels are
    mapped to 0..K-1 in that order, so e.g. classes 5..9 of a model trained on 0..4 can be evaluated.
    Seed k draws numpy.random.default_rng(k); per class one permutation, the first s kept for each s.
    """
    train_features = np.asarray(train_features, dtype=np.float64)
    test_features = np.asarray(test_features, dtype=np.float64)
    train_labels = _labels(train_labels, len(train_features), "fewshot_evaluate")
    test_labels = _labels(test_labels, len(test_features), "fewshot_evaluate")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"fewshot_evaluate: seeds must be an int >= 1, got {seeds!r}")
    shots = tuple(shots)
    if not shots or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shots):
        raise ValueError(f"fewshot_evaluate: shots must be ints >= 1, got {shots!r}")
    classes = np.unique(train_labels) if classes is None else np.asarray(list(classes), dtype=np.int64)
    if len(classes) < 2:
        raise ValueError(f"fewshot_evaluate: needs at least 2 classes, got {list(classes)}")
    by_class = [np.flatnonzero(train_labels == c) for c in classes]
    for c, idx in zip(classes, by_class):
        if len(idx) < max(shots):
            raise ValueError(f"fewshot_evaluate: class {int(c)} has {len(idx)} training examples, fewer than "
                             f"{max(shots)} shots")
    keep = np.isin(test_labels, classes)
    if not keep.any():
        raise ValueError(f"fewshot_evaluate: no test example belongs to classes {list(classes)}")
    remap = {int(c): i for i, c in enumerate(classes)}
    test_y = np.array([remap[int(c)] for c in test_labels[keep]], dtype=np.int64)
    test_x = test_features[keep]
    per_seed = {s: [] for s in shots}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        perms = [rng.permutation(idx) for idx in by_class]
        for s in shots:
            idx = np.concatenate([p[:s] for p in perms])
            y = np.array([remap[int(c)] for c in train_labels[idx]], dtype=np.int64)
            per_seed[s].append(fewshot_accuracy(train_features[idx], y, test_x, test_y, len(classes), l2_reg))
    return {"per_seed": per_seed, "mean": {s: float(np.mean(v)) for s, v in per_seed.items()}}
