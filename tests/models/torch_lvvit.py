"""A PyTorch reimplementation of the TokenLabeling definitions (zihangJiang/TokenLabeling
tlt/models/layers.py PatchEmbed4_2, Attention, Mlp, Block; tlt/models/lvvit.py LV_ViT.forward and
rand_bbox; tlt/loss/cross_entropy.py TokenLabelCrossEntropy), written for the parity tests. MixToken's
draws are passed in instead of drawn from np.random."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed4_2(nn.Module):
    def __init__(self, patch, in_chans, embed_dim, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.proj = nn.Conv2d(width, embed_dim, patch // 2, patch // 2)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.proj(x)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias=False):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * self.hd ** -0.5).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, skip_lam):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, hidden)
        self.skip_lam = skip_lam

    def forward(self, x):
        x = x + self.attn(self.norm1(x)) / self.skip_lam
        return x + self.mlp(self.norm2(x)) / self.skip_lam


def rand_bbox(size, lam, cx, cy):
    """The reference's rand_bbox with the two np.random.randint draws given."""
    W, H = size[2], size[3]
    cut_rat = np.sqrt(1. - lam)
    cut_w, cut_h = int(W * cut_rat), int(H * cut_rat)
    return (np.clip(cx - cut_w // 2, 0, W), np.clip(cy - cut_h // 2, 0, H), np.clip(cx + cut_w // 2, 0, W),
            np.clip(cy + cut_h // 2, 0, H))


class LVViT(nn.Module):
    def __init__(self, image, patch, in_chans, classes, dim, depth, heads, hidden, skip_lam, width, dist=False):
        super().__init__()
        n = (image // patch) ** 2
        self.patch_embed = PatchEmbed4_2(patch, in_chans, dim, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # dist=True: DeiT's distillation token after the class token, with its own head (timm's names)
        self.prefix = 2 if dist else 1
        if dist:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.head_dist = nn.Linear(dim, classes)
        self.pos_embed = nn.Parameter(torch.zeros(1, n + self.prefix, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, hidden, skip_lam) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head, self.aux_head = nn.Linear(dim, classes), nn.Linear(dim, classes)

    def forward(self, x, draw=None):
        x = self.patch_embed(x)
        if self.training and draw is not None:
            lam, cx, cy = draw
            ph, pw = x.shape[2], x.shape[3]
            bbx1, bby1, bbx2, bby2 = rand_bbox(x.size(), lam, cx, cy)
            t = x.clone()
            t[:, :, bbx1:bbx2, bby1:bby2] = x.flip(0)[:, :, bbx1:bbx2, bby1:bby2]
            x = t
        else:
            bbx1 = bby1 = bbx2 = bby2 = 0
        x = x.flatten(2).transpose(1, 2)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.prefix == 2:
            prefix.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = torch.cat(prefix + [x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        x_cls, x_aux = self.head(x[:, 0]), self.aux_head(x[:, self.prefix:])
        x_dist = self.head_dist(x[:, 1]) if self.prefix == 2 else None
        if not self.training:
            if x_dist is not None:  # the DeiT+aux rule: (z_cls + z_dist)/2 + 0.5·max_i z_i
                return (x_cls + x_dist) / 2 + 0.5 * x_aux.max(1)[0]
            return x_cls + 0.5 * x_aux.max(1)[0]
        if draw is not None:
            x_aux = x_aux.reshape(x_aux.shape[0], ph, pw, x_aux.shape[-1])
            t = x_aux.clone()
            t[:, bbx1:bbx2, bby1:bby2, :] = x_aux.flip(0)[:, bbx1:bbx2, bby1:bby2, :]
            x_aux = t.reshape(x_aux.shape[0], ph * pw, x_aux.shape[-1])
        if x_dist is not None:
            return x_cls, x_aux, (bbx1, bby1, bbx2, bby2), x_dist
        return x_cls, x_aux, (bbx1, bby1, bbx2, bby2)


def soft_ce(x, target):
    return torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1).mean()


def token_label_ce(out, target, dense_weight=1.0, cls_weight=1.0):
    """TokenLabelCrossEntropy: target (B, K) (every token takes it) or (B, 2+N, K) packed as the
    reference's loader does ([ground truth, cls label, token labels...])."""
    output, aux, (bbx1, bby1, bbx2, bby2) = out[:3]
    b, n, c = aux.shape
    if target.dim() == 2:
        target_cls, target_aux = target, target.repeat(1, n).reshape(b * n, c)
    else:
        target_cls = target[:, 1]
        target_aux = target[:, 2:].reshape(-1, c)
    lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / n)
    if lam < 1:
        target_cls = lam * target_cls + (1 - lam) * target_cls.flip(0)
    if len(out) == 4:  # a distillation head: the class term split ½/½ between the two heads
        cls_term = 0.5 * (soft_ce(output, target_cls) + soft_ce(out[3], target_cls))
    else:
        cls_term = soft_ce(output, target_cls)
    return cls_weight * cls_term + dense_weight * soft_ce(aux.reshape(-1, c), target_aux)
