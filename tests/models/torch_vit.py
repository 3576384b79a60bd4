"""A plain-PyTorch ViT with vitc.models.ViT's structure and parameter names (the reference for the
parity tests): lucidrains/vit-pytorch (Aug 2023) math."""
import math

import torch
from torch import nn


class TorchPatchify(nn.Module):
    """einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' written with view/permute."""

    def __init__(self, p1, p2):
        super().__init__()
        self.p1, self.p2 = p1, p2

    def forward(self, x):
        b, c, hh, ww = x.shape
        h, w = hh // self.p1, ww // self.p2
        x = x.reshape(b, c, h, self.p1, w, self.p2).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, h * w, self.p1 * self.p2 * c)


class TorchAttention(nn.Module):
    def __init__(self, dim, heads, dim_head, dropout=0.0, qkv_bias=False):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
        self.drop = nn.Dropout(dropout)
        project_out = not (heads == 1 and dim_head == dim)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout)) if project_out else nn.Identity()

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = self.drop((q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class TorchFeedForward(nn.Module):
    def __init__(self, dim, hidden, dropout=0.0, approximate="none"):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate=approximate), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class TorchBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, mlp_dim, dropout, qkv_bias, eps, approximate):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = TorchAttention(dim, heads, dim_head, dropout, qkv_bias)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.ff = TorchFeedForward(dim, mlp_dim, dropout, approximate)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class TorchTransformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, mlp_dim, dropout, qkv_bias, eps, approximate):
        super().__init__()
        self.layers = nn.ModuleList([TorchBlock(dim, heads, dim_head, mlp_dim, dropout, qkv_bias, eps, approximate)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x):
        for blk in self.layers:
            x = blk(x)
        return self.norm(x)


def torch_posemb_sincos_1d(n, dim, article=False, temperature=10000.0):
    """lucidrains simple_vit_1d.posemb_sincos_1d; article=True: seed 004's ω_k = T^-(k+1)/(D/2)."""
    pos = torch.arange(n, dtype=torch.float32)
    half = dim // 2
    omega = (torch.arange(half, dtype=torch.float32) + 1) / half if article else \
        torch.arange(half, dtype=torch.float32) / (half - 1)
    omega = 1.0 / (temperature ** omega)
    ang = pos[:, None] * omega[None, :]
    return torch.cat((ang.sin(), ang.cos()), dim=1)


class TorchViT(nn.Module):
    def __init__(self, *, image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, pool="cls", channels=3,
                 dim_head=64, dropout=0.0, emb_dropout=0.0, pos_emb="learn", qkv_bias=False, norm_eps=1e-5,
                 patch_norm=True, gelu="none"):
        super().__init__()
        n = (image_size // patch_size) ** 2
        patch_dim = channels * patch_size * patch_size
        layers = [TorchPatchify(patch_size, patch_size)]
        if patch_norm:
            layers += [nn.LayerNorm(patch_dim, eps=norm_eps), nn.Linear(patch_dim, dim), nn.LayerNorm(dim, eps=norm_eps)]
        else:
            layers += [nn.Linear(patch_dim, dim)]
        self.to_patch_embedding = nn.Sequential(*layers)
        if pos_emb == "learn":
            self.pos_embedding = nn.Parameter(torch.randn(1, n + 1, dim))
        else:
            pe = torch_posemb_sincos_1d(n + 1, dim, article=pos_emb in ("pe1d", "sincos1d_article"))
            self.register_buffer("pos_embedding", pe[None], persistent=False)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = TorchTransformer(dim, depth, heads, dim_head, mlp_dim, dropout, qkv_bias, norm_eps, gelu)
        self.pool = pool
        self.to_latent = nn.Identity()
        self.mlp_head = nn.Linear(dim, num_classes)

    def forward(self, img):
        x = self.to_patch_embedding(img)
        b = x.shape[0]
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x = self.dropout(x + self.pos_embedding)
        x = self.transformer(x)
        x = x.mean(dim=1) if self.pool == "mean" else x[:, 0]
        return self.mlp_head(self.to_latent(x))


def copy_weights(vitc_model, torch_model):
    """Load the vitc model's state_dict into the torch model (strict: same names and shapes)."""
    sd = {k: torch.from_numpy(v.numpy().copy()) for k, v in vitc_model.state_dict().items()}
    torch_model.load_state_dict(sd, strict=True)
    return torch_model


__all__ = ["TorchViT", "copy_weights", "torch_posemb_sincos_1d", "math"]
