"""LV-ViT's convolutional patch embedding (Jiang et al., arXiv 2104.10858 §3.2 / Table 1;
zihangJiang/TokenLabeling tlt/models/layers.py `PatchEmbed4_2`).

conv 7×7 s2 p3 → BN → ReLU → conv 3×3 → BN → ReLU → conv 3×3 → BN → ReLU → proj conv with
kernel = stride = P/2 (with bias) → (B, N, D). The three stem convs have no bias: each feeds a BatchNorm.
The seed article's "8×8 stride 4" last conv cannot give an (H/P)×(W/P) grid; the official code's
kernel = stride = P/2 does, and vitc follows it. Attribute names follow the official module, so its
state_dict keys map one to one (vitc.models.lvvit.load_official_state_dict).
"""
import vitc as _v

from .._checks import expect_int, expect_pair
from .activation import ReLU
from .conv import Conv2d
from .module import Module
from .normalization import BatchNorm2d

__all__ = ["ConvPatchEmbed"]


class ConvPatchEmbed(Module):
    """ConvPatchEmbed(image_size, patch_size, in_chans, embed_dim, stem_width=64): (B, C, H, W) -> (B, N, D).

    The patch size must be even (the stride-2 first conv halves the image, the projection covers P/2)
    and divide the image size."""

    def __init__(self, image_size, patch_size, in_chans, embed_dim, stem_width=64):
        super().__init__()
        who = "ConvPatchEmbed"
        ih, iw = expect_pair(image_size, who, "image_size", minimum=1)
        ph, pw = expect_pair(patch_size, who, "patch_size", minimum=1)
        if ph % 2 or pw % 2:
            raise ValueError(f"{who}: the conv stem needs an even patch size (its stride-2 first conv and a "
                             f"P/2 projection), got patch_size {ph}x{pw}")
        if ih % ph or iw % pw:
            raise ValueError(f"{who}: image size {ih}x{iw} must be divisible by the patch size {ph}x{pw}")
        expect_int(in_chans, who, "in_chans", 1)
        expect_int(embed_dim, who, "embed_dim", 1)
        width = expect_int(stem_width, who, "stem_width", 1)
        self.image_size, self.patch_size, self.in_chans = (ih, iw), (ph, pw), in_chans
        self.grid_size = (ih // ph, iw // pw)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.conv1 = Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.relu = ReLU()
        self.conv2 = Conv2d(width, width, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNorm2d(width)
        self.conv3 = Conv2d(width, width, 3, stride=1, padding=1, bias=False)
        self.bn3 = BatchNorm2d(width)
        half = (ph // 2, pw // 2)
        self.proj = Conv2d(width, embed_dim, half, stride=half)

    def forward(self, input):
        want = (self.in_chans,) + self.image_size
        if input.ndim != 4 or tuple(input.shape[1:]) != want:
            raise ValueError(f"ConvPatchEmbed: expected images of shape (B, {want[0]}, {want[1]}, {want[2]}), "
                             f"got {tuple(input.shape)}")
        x = self.relu(self.bn1(self.conv1(input)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.proj(x)  # (B, D, H/P, W/P)
        return _v.flatten(x, 2).transpose(1, 2)

    def extra_repr(self):
        return f"image_size={self.image_size}, patch_size={self.patch_size}, grid={self.grid_size}"
