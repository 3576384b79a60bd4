"""vitc.nn.functional: the functional ops under their torch.nn.functional names.

The ops themselves live in the op families (``vitc.<name>``, csrc/ops/); this module re-exports
them so PyTorch code written against ``F`` runs with ``import vitc.nn.functional as F``.
"""
import vitc as _v

# names looked up on the vitc package when first used (each family module exports its own)
_FORWARDED = (
    # activations
    "gelu", "relu", "tanh", "sigmoid", "softmax", "log_softmax", "dropout", "drop_path",
    # linear algebra and shapes
    "linear", "matmul", "bmm",
    # normalisation
    "layer_norm", "batch_norm", "token_batch_norm",
    # losses
    "cross_entropy", "kl_div", "binary_cross_entropy_with_logits", "mse_loss",
    # attention
    "scaled_dot_product_attention", "multi_head_attention_packed", "reattention_packed", "attention_apply",
    # the fused feed-forward layer
    "linear_gelu_linear",
    # convolution and pooling
    "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "patchify",
)

__all__ = list(_FORWARDED) + ["one_hot", "embedding"]


def __getattr__(name):
    if name in _FORWARDED:
        try:
            return getattr(_v, name)
        except AttributeError:
            raise AttributeError(f"vitc.nn.functional.{name}: the op vitc.{name} is not available in this "
                                 "build") from None
    raise AttributeError(f"module 'vitc.nn.functional' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_FORWARDED))


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, sparse=False):
    """torch.nn.functional.embedding: weight[input] (vitc/nn/embedding.py)."""
    from .embedding import embedding as _embedding

    return _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)


def one_hot(tensor, num_classes=-1):
    """int64 (...,) class indices -> int64 (..., num_classes) one-hot (torch.nn.functional.one_hot)."""
    import numpy as np

    if not isinstance(tensor, _v.Tensor) or tensor.dtype is not _v.int64:
        raise TypeError("one_hot is only applicable to index tensors (vitc.int64)")
    idx = tensor.numpy()
    if idx.size and idx.min() < 0:
        raise ValueError("one_hot: class values must be non-negative")
    if num_classes == -1:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    if idx.size and idx.max() >= num_classes:
        raise ValueError(f"one_hot: class values must be smaller than num_classes ({num_classes})")
    out = np.zeros(idx.shape + (num_classes,), dtype=np.int64)
    np.put_along_axis(out, idx[..., None], 1, axis=-1)
    return _v.from_numpy(out)
