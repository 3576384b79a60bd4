"""Losses with torch.nn.functional names and semantics (csrc/ops/loss.c).

cross_entropy is one fused C kernel (log-softmax + NLL per row, class indices or class
probabilities, label smoothing, class weights, ignore_index, inputs (N, K) or (N, K, d1, ...) and
unbatched (K,)). sigmoid_cross_entropy (big_vision's sigmoid_xent) is one fused kernel too. nll_loss, binary_cross_entropy_with_logits, kl_div and mse_loss are C kernels too.
"""
import numbers
import warnings

__all__ = ['cross_entropy', 'nll_loss', 'binary_cross_entropy_with_logits', 'kl_div', 'mse_loss',
           'sigmoid_cross_entropy']

from .._checks import expect_int, expect_tensor
from .._tensor import _call, float32, int64

_RED = {'none': 0, 'mean': 1, 'sum': 2}


def _reduction(size_average, reduce, reduction, who, extra=()):
    """The reduction code, honouring torch's deprecated size_average/reduce pair."""
    if size_average is None and reduce is None and not extra and type(reduction) is str and reduction in _RED:
        return _RED[reduction]  # the common case, without building the table
    if size_average is not None or reduce is not None:
        sa = True if size_average is None else bool(size_average)
        rd = True if reduce is None else bool(reduce)
        reduction = 'none' if not rd else 'mean' if sa else 'sum'
    codes = dict(_RED, **{name: code for name, code in extra})
    if not isinstance(reduction, str) or reduction not in codes:
        raise ValueError(f"{who}: {reduction!r} is not a valid value for reduction "
                         f"(expected one of {', '.join(repr(k) for k in codes)})")
    return codes[reduction]


def _unbatched(input, target, who):
    """Input (K,): add the batch dim (target () for class indices, (K,) for probabilities)."""
    if input.ndim != 1:
        return input, target, False
    if target.dtype is int64 and target.ndim == 0:
        return input.reshape(1, -1), target.reshape(1), True
    if target.dtype is float32 and target.shape == input.shape:
        return input.reshape(1, -1), target.reshape(1, -1), True
    raise ValueError(f"{who}: for an unbatched input of shape {tuple(input.shape)} the target must be a 0-d int64 "
                     f"class index or float32 probabilities of shape {tuple(input.shape)}, got {target.dtype!r} "
                     f"of shape {tuple(target.shape)}")


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction='mean',
                  label_smoothing=0.0):
    """Cross entropy of logits input (N, K, ...) against class indices (N, ...) int64 or class
    probabilities (N, K, ...) float32, with optional class weight (K,) and label smoothing
    (y ← (1−ε)·y + ε/K on every class, as torch.nn.functional.cross_entropy)."""
    who = "cross_entropy"
    expect_tensor(input, who, "input")
    expect_tensor(target, who, "target")
    expect_tensor(weight, who, "weight", optional=True)
    red = _reduction(size_average, reduce, reduction, who)
    ignore_index = expect_int(ignore_index, who, "ignore_index")
    if type(label_smoothing) not in (float, int) and (not isinstance(label_smoothing, numbers.Real)
                                                      or isinstance(label_smoothing, bool)):
        raise TypeError(f"{who}: label_smoothing must be a float, got {type(label_smoothing).__name__}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{who}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    input, target, single = _unbatched(input, target, who)
    out = _call("cross_entropy", (input, target, weight), reduction=red, ignore_index=ignore_index,
                label_smoothing=float(label_smoothing))
    return out.reshape(()) if single and red == 0 else out


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction='mean'):
    """Negative log likelihood of log-probabilities input (N, K, ...) at class indices target (N, ...)."""
    who = "nll_loss"
    expect_tensor(input, who, "input")
    expect_tensor(target, who, "target")
    expect_tensor(weight, who, "weight", optional=True)
    red = _reduction(size_average, reduce, reduction, who)
    ignore_index = expect_int(ignore_index, who, "ignore_index")
    if input.ndim == 1:
        if target.ndim != 0:
            raise ValueError(f"{who}: for an unbatched input of shape {tuple(input.shape)} the target must be 0-d, "
                             f"got shape {tuple(target.shape)}")
        out = _call("nll_loss", (input.reshape(1, -1), target.reshape(1), weight), reduction=red,
                    ignore_index=ignore_index)
        return out.reshape(()) if red == 0 else out
    return _call("nll_loss", (input, target, weight), reduction=red, ignore_index=ignore_index)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction='mean',
                                     pos_weight=None):
    """Sigmoid + binary cross entropy in one stable expression:
    max(z, 0) − z·y + log(1 + e^{−|z|}) (pos_weight p scales the positive term by p)."""
    who = "binary_cross_entropy_with_logits"
    expect_tensor(input, who, "input")
    expect_tensor(target, who, "target")
    expect_tensor(weight, who, "weight", optional=True)
    expect_tensor(pos_weight, who, "pos_weight", optional=True)
    red = _reduction(size_average, reduce, reduction, who)
    return _call("binary_cross_entropy_with_logits", (input, target, weight, pos_weight), reduction=red,
                 has_weight=int(weight is not None), has_pos_weight=int(pos_weight is not None))


def kl_div(input, target, size_average=None, reduce=None, reduction='mean', log_target=False):
    """KL divergence with input = log q: target·(log target − input) (log_target: e^t·(t − input)).
    'batchmean' divides the sum by input.shape[0]; 'mean' by the number of elements."""
    who = "kl_div"
    expect_tensor(input, who, "input")
    expect_tensor(target, who, "target")
    red = _reduction(size_average, reduce, reduction, who, extra=(('batchmean', 3),))
    return _call("kl_div", (input, target), reduction=red, log_target=int(bool(log_target)))


def mse_loss(input, target, size_average=None, reduce=None, reduction='mean'):
    """(input − target)², broadcast like torch (which warns when the shapes differ)."""
    who = "mse_loss"
    expect_tensor(input, who, "input")
    expect_tensor(target, who, "target")
    red = _reduction(size_average, reduce, reduction, who)
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"Using a target size ({tuple(target.shape)}) that is different to the input size "
                      f"({tuple(input.shape)}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=2)
    return _call("mse_loss", (input, target), reduction=red)


def sigmoid_cross_entropy(input, target):
    """Sigmoid cross-entropy (big_vision utils.sigmoid_xent, used by Scaling ViT, arXiv 2106.04560):
    Σ_k −[y·log σ(z) + (1−y)·log σ(−z)] summed over the classes (and any trailing dims), averaged over
    the batch dim N. input (N, K, ...) logits; target float32 of input's shape (multi-label or soft) or int64
    class indices (N, ...), taken as one-hot. Equals torch's binary_cross_entropy_with_logits(z, y,
    reduction='sum') / N; an empty batch gives NaN (0/0), as that formula does."""
    who = "sigmoid_cross_entropy"
    expect_tensor(input, who, "input")
    expect_tensor(target, who, "target")
    return _call("sigmoid_cross_entropy", (input, target))
