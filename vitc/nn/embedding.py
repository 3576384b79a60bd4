"""Embedding: a lookup table of vectors (torch.nn.Embedding), built on the index_select op, whose
backward adds each output row's gradient into the row it was read from (repeated indices add)."""
import numbers

import vitc as _v

from . import init
from .._checks import expect_int, expect_tensor
from .module import Module
from .parameter import Parameter

__all__ = ["Embedding", "embedding"]


def _padding_index(padding_idx, num_embeddings, who):
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
        raise TypeError(f"{who}: padding_idx must be an int or None, got {type(padding_idx).__name__}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{who}: padding_idx {padding_idx} must be within [-{num_embeddings}, {num_embeddings})")
    return int(padding_idx) % num_embeddings


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """weight[input]: input int64 of any shape, weight (num_embeddings, dim) -> (*input.shape, dim)
    (torch.nn.functional.embedding). Rows read at padding_idx get no gradient."""
    who = "embedding"
    expect_tensor(input, who, "input")
    expect_tensor(weight, who, "weight")
    if max_norm is not None:
        raise NotImplementedError(f"{who}: max_norm (renormalising rows in place) is not supported")
    if scale_grad_by_freq or sparse:
        raise NotImplementedError(f"{who}: {'scale_grad_by_freq' if scale_grad_by_freq else 'sparse'}=True is not "
                                  "supported")
    if input.dtype is not _v.int64:
        raise TypeError(f"{who}: input must be an int64 (vitc.long) tensor of indices, got {input.dtype!r}")
    if weight.ndim != 2:
        raise ValueError(f"{who}: weight must be 2-d (num_embeddings, embedding_dim), got shape {tuple(weight.shape)}")
    padding_idx = _padding_index(padding_idx, weight.shape[0], who)
    flat = input.reshape(-1)
    try:
        rows = _v.index_select(weight, 0, flat)
    except IndexError as e:
        raise IndexError(f"{who}: index out of range for a table of {weight.shape[0]} rows ({e})") from None
    if padding_idx is not None and rows.requires_grad:
        # the padding rows read the same values from a detached table: no gradient reaches that row
        pad = (flat == padding_idx).reshape(-1, 1)
        rows = _v.where(pad, rows.detach(), rows)
    return rows.reshape(*input.shape, weight.shape[1])


class Embedding(Module):
    """A table of num_embeddings vectors of size embedding_dim, weight ~ N(0, 1) (torch's init), the
    padding_idx row zero. forward(input int64 (...)) -> (..., embedding_dim); the padding row gets no
    gradient. max_norm, scale_grad_by_freq and sparse raise NotImplementedError."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False):
        super().__init__()
        who = "Embedding"
        self.num_embeddings = expect_int(num_embeddings, who, "num_embeddings", minimum=0)
        self.embedding_dim = expect_int(embedding_dim, who, "embedding_dim", minimum=0)
        self.padding_idx = _padding_index(padding_idx, self.num_embeddings, who)
        if max_norm is not None or scale_grad_by_freq or sparse:
            embedding(_v.zeros(0, dtype=_v.int64), _v.zeros(1, 1), None, max_norm, norm_type, scale_grad_by_freq,
                      sparse)
        self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse = None, norm_type, False, False
        if _weight is None:
            self.weight = Parameter(_v.empty(num_embeddings, embedding_dim), requires_grad=not _freeze)
            self.reset_parameters()
        else:
            expect_tensor(_weight, who, "_weight")
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"{who}: _weight has shape {tuple(_weight.shape)}, expected "
                                 f"({num_embeddings}, {embedding_dim})")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with _v.no_grad():
                self.weight[self.padding_idx].fill_(0.0)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        expect_tensor(embeddings, "Embedding.from_pretrained", "embeddings")
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-d, got shape {tuple(embeddings.shape)}")
        rows, dim = embeddings.shape
        return cls(rows, dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight=embeddings,
                   _freeze=freeze)

    def forward(self, input):
        return embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
