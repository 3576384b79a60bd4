"""Peak memory of one training step, counted as the caching allocator counts it (csrc/core/alloc.c):
every tensor is one block rounded up to its size class, and vitc.memory_stats()['peak_bytes'] is the
largest sum of live blocks.

Resident between steps: the optimizer's flat parameter buffer, its flat gradient buffer and its
state buffers (vitc/optim/optimizer.py keeps each group in one block of each). During the step:
the tensors the forward ops save for backward (read off each op's forward in csrc/ops), and on top
of them the largest set of temporaries alive at once, which is reached in backward.

What each op keeps for backward (B images, T tokens, R = B·T rows, D width, F MLP width, H heads of
Dh, HD = H·Dh):
- patchify: nothing; the patch Linear saves its input, the patches (B, N, P²C);
- layer_norm (csrc/ops/norm.c): its input (the residual stream, shared with the add that made
  it), the per-row mean and 1/std (R each);
- qkv_attention (csrc/ops/attention/mha.c, packed.c): its input x (R, D), the packed qkv (R, 3·HD),
  the softmax maps A (B, H, T, T) and, with the output projection fused in, the attention output
  before it (R, HD);
- linear_gelu_linear (csrc/ops/ffn.c): its input (R, D) and the pre-activation h (R, F) (the GELU
  output is recomputed in backward);
- the residual adds save nothing; the final LayerNorm keeps its input, and its output stays alive
  while the head's Linear holds a view of it (pool 'cls') or the MAP head's kv Linear holds it;
- scaled_dot_product_attention (MAP head) keeps contiguous k and v (R, D each).
Backward's largest moment is the last block's FFN: GELU(h) and GELU'(h) computed together
(2 × (R, F)) while the incoming gradient and the residual's gradient (R, D each) are alive, plus the
second layer's weight gradient (F, D) before it is added into the flat gradient buffer; by then
the head and the final LayerNorm have freed what they saved. For small bodies the head's backward is
larger: its weight gradient (classes × width) while every activation is still saved, or the patch
Linear's weight gradient (width × P²C) at the very end, when only the patches are still saved.
"""
import dataclasses

__all__ = ["block_bytes", "optimizer_state_bytes", "MemoryBreakdown", "memory_breakdown", "OPTIMIZERS"]

_SMALL, _ALIGN, _PER_OCTAVE = 1024, 64, 8
OPTIMIZERS = ("adam", "adamw", "adam_bf16m", "adam_bf16", "adafactor", "sgd", "sgd_momentum")


def block_bytes(nbytes):
    """The allocator's block for an n-byte request (csrc/core/alloc.c size_class): multiples of 64 up to
    1 KiB, then 8 classes per power of two."""
    n = int(nbytes)
    if n <= _SMALL:
        return max(1, -(-n // _ALIGN)) * _ALIGN
    k = (n - 1).bit_length() - 1  # n in (2^k, 2^(k+1)]
    step = 1 << (k - 3)
    return -(-n // step) * step


def _numel(shape):
    n = 1
    for v in shape:
        n *= v
    return n


def optimizer_state_bytes(shapes, optimizer="adam", min_dim_size_to_factor=32):
    """The exact bytes of the optimizer's state buffers for parameters of these shapes, as
    vitc.optim's state_bytes() counts them (elements × item size, no rounding):
    adam / adamw: m and v f32 (8 bytes a parameter); adam_bf16m: m bfloat16, v f32 (6);
    adam_bf16: both bfloat16 (4); adafactor: bfloat16 momentum (2 a parameter) + f32 second
    moments, factored (row + column statistics) where vitc.optim.Adafactor factors;
    sgd: none; sgd_momentum: the f32 momentum buffer (4)."""
    n = sum(_numel(s) for s in shapes)
    if optimizer in ("adam", "adamw"):
        return 8 * n
    if optimizer == "adam_bf16m":
        return 6 * n
    if optimizer == "adam_bf16":
        return 4 * n
    if optimizer == "sgd":
        return 0
    if optimizer == "sgd_momentum":
        return 4 * n
    if optimizer == "adafactor":
        from vitc.optim.adafactor import factored_axes
        second = 0
        for s in shapes:
            ax = factored_axes(tuple(s), min_dim_size_to_factor)
            if ax is None:
                second += _numel(s)
            else:
                d0, d1 = ax
                second += _numel(s[:d0] + s[d0 + 1:]) + _numel(s[:d1] + s[d1 + 1:])
        return 2 * n + 4 * second
    raise ValueError(f"plan: unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def _state_blocks(shapes, optimizer):
    """The state buffers as the allocator sees them: one block per buffer."""
    n = sum(_numel(s) for s in shapes)
    if optimizer in ("adam", "adamw"):
        return [4 * n, 4 * n]
    if optimizer == "adam_bf16m":
        return [2 * n, 4 * n]
    if optimizer == "adam_bf16":
        return [2 * n, 2 * n]
    if optimizer == "sgd":
        return []
    if optimizer == "sgd_momentum":
        return [4 * n]
    total = optimizer_state_bytes(shapes, optimizer)
    return [2 * n, total - 2 * n]  # adafactor: momentum, then the packed second moments


@dataclasses.dataclass
class MemoryBreakdown:
    parameters: int
    gradients: int
    optimizer_state: int          # exact bytes (state_bytes())
    optimizer_blocks: int         # the same buffers as allocator blocks
    activations: dict             # saved for backward, by op, allocator blocks
    transient: int                # backward's largest set of temporaries on top of the saved ones
    rounding: int                 # allocator blocks minus requested bytes, over everything counted

    @property
    def activation_bytes(self):
        return sum(self.activations.values())

    @property
    def resident(self):
        return self.parameters + self.gradients + self.optimizer_blocks

    @property
    def peak(self):
        return self.resident + self.activation_bytes + self.transient


class _Ledger:
    """Collects requested sizes per label, remembers the allocator blocks."""

    def __init__(self):
        self.blocks, self.requested = {}, 0

    def add(self, label, nbytes, count=1):
        self.requested += int(nbytes) * count
        b = block_bytes(nbytes) * count
        self.blocks[label] = self.blocks.get(label, 0) + b
        return b


def memory_breakdown(cfg, batch, optimizer="adam"):
    shapes = cfg.param_shapes()
    n = sum(_numel(s) for s in shapes)
    f4 = 4
    B, T, N, D, F, H = batch, cfg.tokens, cfg.num_patches, cfg.dim, cfg.mlp_dim, cfg.heads
    HD, R, K = cfg.inner, batch * cfg.tokens, cfg.num_classes
    res = _Ledger()
    params = res.add("parameters", f4 * n)
    grads = res.add("gradients", f4 * n)
    state_exact = optimizer_state_bytes(shapes, optimizer)
    opt_blocks = sum(res.add("optimizer state", b) for b in _state_blocks(shapes, optimizer) if b)
    if not cfg.learned_pos:  # a fixed sin-cos table is a buffer of its own
        res.add("parameters", f4 * T * D)
        params = res.blocks["parameters"]

    act = _Ledger()
    # patch embedding
    act.add("patch embed", f4 * B * N * cfg.patch_dim)                    # patches, saved by Linear (or LN)
    if cfg.patch_norm:
        act.add("patch embed", f4 * B * N, 4)                             # two LNs' mean and 1/std
        act.add("patch embed", f4 * B * N * cfg.patch_dim)                # LN output, saved by the Linear
        act.add("patch embed", f4 * B * N * D)                            # Linear output, saved by the 2nd LN
    # blocks
    for _ in range(cfg.depth):
        act.add("residual stream", f4 * R * D, 2)                         # block input, after-attention stream
        act.add("layer norm", f4 * R, 4)                                  # mean, 1/std of norm1 and norm2
        act.add("layer norm", f4 * R * D, 2)                              # norm1, norm2 outputs
        act.add("attention qkv", f4 * R * 3 * HD)
        act.add("attention maps", f4 * B * H * T * T)
        if cfg.project_out:
            act.add("attention out", f4 * R * HD)
        act.add("mlp hidden", f4 * R * F)
    # final norm and head
    act.add("residual stream", f4 * R * D)                                # final LN input
    act.add("head", f4 * R, 2)                                            # its mean and 1/std
    if cfg.pool in ("cls", "map"):
        act.add("head", f4 * R * D)                                       # final LN output, kept by the head
    if cfg.pool == "map":
        Np = N
        act.add("head", f4 * B * Np * D, 2)                               # sdpa's contiguous k, v
        act.add("head", f4 * B * H * Np)                                  # its probabilities
        act.add("head", f4 * B * D, 4)                                    # o, LN(o) and its stats, ffn input
        act.add("head", f4 * B * cfg.mlp_dim)                             # the MAP MLP's hidden
    act.add("head", f4 * B * D)                                           # pooled features
    if cfg.pre_logits is not None:
        act.add("head", f4 * B * cfg.pre_logits, 2)
    act.add("head", f4 * B * K, 3)                                        # logits, loss's softmax and grad

    # backward's largest moment, the last block's FFN: GELU(h), GELU'(h), the gradients in flight and
    # the second Linear's weight gradient, after the head and the final norm have freed what they kept
    tr = _Ledger()
    tr.add("gelu pair", f4 * R * F, 2)
    tr.add("grads in flight", f4 * R * D, 2)
    tr.add("weight grad", f4 * F * D)
    freed = act.blocks["head"] + block_bytes(f4 * R * D)
    # or the head's backward, first of all: its weight gradient (K, D) is a tensor of its own until it
    # is added into the flat buffer, while every activation is still saved (large with 1000 classes)
    head_in = cfg.pre_logits or D
    head_grad = block_bytes(f4 * K * head_in) + block_bytes(f4 * K) + block_bytes(f4 * B * head_in)
    # or the patch Linear's backward, last of all: its weight gradient (D, P²C) and the gradient
    # reaching it, when of the activations only the patches are still saved (tiny bodies, big patches)
    patches = block_bytes(f4 * B * N * cfg.patch_dim)
    patch_grad = (block_bytes(f4 * D * cfg.patch_dim) + block_bytes(f4 * D) + block_bytes(f4 * B * N * D)
                  - (sum(act.blocks.values()) - patches))
    transient = max(sum(tr.blocks.values()) - freed, head_grad, patch_grad,
                    block_bytes(f4 * R * F) + block_bytes(f4 * R * D))
    rounding = (sum(res.blocks.values()) + sum(act.blocks.values()) + transient
                - res.requested - act.requested - tr.requested)
    return MemoryBreakdown(parameters=params, gradients=grads, optimizer_state=state_exact,
                           optimizer_blocks=opt_blocks, activations=dict(act.blocks), transient=transient,
                           rounding=rounding)
