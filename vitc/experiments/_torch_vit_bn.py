"""PyTorch implementations of seed 004's three models for the experiment's ``--backend torch``:
ViT (lucidrains/vit-pytorch, Aug 2023), ViTBNFFN and ViTBN (the article's classes,
anindyahepth/BatchNorm_in_Transformers_CV model/vitbn.py and model/vitbnffn.py).

Parameter and buffer names equal vitc's (``vitc.models.ViT``/``ViTBNFFN``/``ViTBN``), so a vitc
model's state_dict loads into its PyTorch twin and both backends start from the same weights.
"""
import torch
from torch import nn


class TokenBN(nn.BatchNorm1d):
    """The article's Batch_Norm: (b, n, d) -> (b, d, n) -> BatchNorm1d(d) -> (b, n, d)."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _norm(kind, d):
    return TokenBN(d) if kind == "batch" else nn.LayerNorm(d)


class Patchify(nn.Module):
    """einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        b, c, hh, ww = x.shape
        p = self.p
        x = x.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (hh // p) * (ww // p), p * p * c)


class Attention(nn.Module):
    def __init__(self, dim, heads, dim_head, qkv_bias):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=qkv_bias)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    def __init__(self, dim, heads, dim_head, mlp_dim, norm, ffn_norm, qkv_bias):
        super().__init__()
        self.norm1 = _norm(norm, dim)
        self.attn = Attention(dim, heads, dim_head, qkv_bias)
        if ffn_norm:  # the article's FFN: Lin1 -> BN -> GELU -> Dropout -> Lin2, no norm before it
            self.norm2 = nn.Identity()
            self.ff = nn.Module()
            self.ff.net = nn.Sequential(nn.Linear(dim, mlp_dim), _norm(ffn_norm, mlp_dim), nn.GELU(), nn.Dropout(0.0),
                                        nn.Linear(mlp_dim, dim))
        else:
            self.norm2 = _norm(norm, dim)
            self.ff = nn.Module()
            self.ff.net = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, dim),
                                        nn.Dropout(0.0))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ff.net(self.norm2(x))


class TorchViTFamily(nn.Module):
    """norm='layer', ffn_norm=None: ViT; ffn_norm='batch': ViTBNFFN; norm='batch' too: ViTBN."""

    def __init__(self, *, image_size=28, patch_size=7, num_classes=10, channels=1, dim=64, depth=6, heads=8,
                 dim_head=64, mlp_dim=128, pool="cls", norm="layer", ffn_norm=None, qkv_bias=False,
                 first_block_only=False):
        super().__init__()
        n = (image_size // patch_size) ** 2
        pd = channels * patch_size * patch_size
        self.to_patch_embedding = nn.Sequential(Patchify(patch_size), _norm(norm, pd), nn.Linear(pd, dim),
                                                _norm(norm, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, n + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.transformer = nn.Module()
        self.transformer.layers = nn.ModuleList([Block(dim, heads, dim_head, mlp_dim, norm, ffn_norm, qkv_bias)
                                                 for _ in range(depth)])
        self.transformer.norm = _norm(norm, dim)
        self.mlp_head = nn.Linear(dim, num_classes)
        self.pool, self.first_block_only = pool, first_block_only

    def forward(self, img):
        x = self.to_patch_embedding(img)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embedding
        for blk in self.transformer.layers:
            x = blk(x)
            if self.first_block_only:  # the article's early return (docs/choices.md)
                break
        x = self.transformer.norm(x)
        x = x.mean(dim=1) if self.pool == "mean" else x[:, 0]
        return self.mlp_head(x)
