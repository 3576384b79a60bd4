"""MixToken (Jiang et al., arXiv 2104.10858 §3.3, eqs. 5–7; zihangJiang/TokenLabeling
tlt/models/lvvit.py `rand_bbox` and `LV_ViT.forward`).

In training, after the patch embedding: λ ~ Beta(1, 1), a CutMix box on the Hg×Wg token grid, and the
tokens of sample b inside the box are replaced by those of sample B−1−b (the batch flipped). The
model swaps the boxed region of its token logits back afterwards, so token i's logits line up with the
dense label of the image the token came from; the class target is mixed with the area-corrected
λ = 1 − box area / N (what the model returns). The box follows the reference's `rand_bbox` exactly:
half-widths int(side·√(1−λ))//2 on each side of a uniformly drawn centre, clipped to the grid.
"""
from collections import namedtuple

import numpy as np

import vitc as _v

__all__ = ["TokenLabelingOutput", "DistilledTokenLabelingOutput", "mixtoken_box", "MixTokenPlan", "draw_mixtoken"]

# What an LV-ViT-style model with an aux head returns in training: class logits (B, K), token logits
# (B, N, K) aligned with the un-mixed token labels, and λ (1.0 when no tokens were mixed).
TokenLabelingOutput = namedtuple("TokenLabelingOutput", "cls_logits token_logits lam")
# The same with a distillation token (models.DeiT with aux_head=True): its head's logits (B, K) as well.
DistilledTokenLabelingOutput = namedtuple("DistilledTokenLabelingOutput", "cls_logits token_logits lam dist_logits")


def mixtoken_box(lam, grid, cx, cy):
    """The reference's box for draws λ and centre (cx row, cy column) on a (rows, cols) grid:
    (r0, c0, r1, c1), rows r0:r1 and columns c0:c1."""
    rows, cols = grid
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"mixtoken_box: lam must be in [0, 1], got {lam}")
    if not (0 <= cx < rows and 0 <= cy < cols):
        raise ValueError(f"mixtoken_box: centre ({cx}, {cy}) is outside the {rows}x{cols} token grid")
    cut = np.sqrt(1.0 - lam)
    cut_r, cut_c = int(rows * cut), int(cols * cut)
    r0, r1 = int(np.clip(cx - cut_r // 2, 0, rows)), int(np.clip(cx + cut_r // 2, 0, rows))
    c0, c1 = int(np.clip(cy - cut_c // 2, 0, cols)), int(np.clip(cy + cut_c // 2, 0, cols))
    return r0, c0, r1, c1


def draw_mixtoken(grid):
    """(λ, cx, cy) from vitc's generator: λ ~ Beta(1, 1) = U(0, 1), the centre uniform on the grid."""
    u = _v.rand(3).numpy().astype(np.float64)
    rows, cols = grid
    return float(u[0]), min(int(u[1] * rows), rows - 1), min(int(u[2] * cols), cols - 1)


class MixTokenPlan:
    """One batch's MixToken: the box, the corrected λ and the own-token mask (N,)."""

    def __init__(self, batch, grid, lam, cx, cy):
        if batch < 2:
            raise ValueError(f"MixToken needs a batch of at least 2 images to mix (the partner of sample b is "
                             f"B-1-b), got batch size {batch}")
        self.grid = tuple(grid)
        self.box = mixtoken_box(lam, self.grid, cx, cy)
        r0, c0, r1, c1 = self.box
        n = self.grid[0] * self.grid[1]
        own = np.ones(self.grid, bool)
        own[r0:r1, c0:c1] = False
        self.lam = 1.0 - (r1 - r0) * (c1 - c0) / n
        self._own = own.reshape(n)
        self._rows = {}  # batch size -> the source row of each of the B·N token rows

    def _source_rows(self, b):
        """Row b·N + i of the output reads row (b if token i is outside the box, else B−1−b)·N + i: one
        gather of rows (index_select, whose backward scatters the gradient back along the same
        permutation) instead of two masked products, a flip and a sum."""
        if b not in self._rows:
            n, img = self._own.size, np.arange(b)[:, None]
            src = np.where(self._own[None, :], img, b - 1 - img) * n + np.arange(n)[None, :]
            self._rows[b] = _v.from_numpy(src.reshape(-1).astype(np.int64))
        return self._rows[b]

    def apply(self, tokens):
        """(B, N, D) -> tokens of B−1−b inside the box, b's own outside. Applying it twice restores the
        batch, which is how the token logits are swapped back."""
        if self.lam == 1.0:
            return tokens
        if tokens.ndim != 3 or tokens.shape[1] != self._own.size:
            raise ValueError(f"MixToken: expected tokens (B, {self._own.size}, D), got {tuple(tokens.shape)}")
        b, n, d = tokens.shape
        rows = _v.index_select(tokens.reshape(b * n, d), 0, self._source_rows(b))
        return rows.reshape(b, n, d)
