"""A small ResNet (He et al. 2016, basic blocks; torchvision's module names) for 28×28 images: the
convnet teacher of the DeiT experiment (DeiT, arXiv 2012.12877 section 5: its teacher is a convnet).

image -> conv3×3 -> BN -> ReLU -> stages of BasicBlocks (the first block of a stage may stride 2,
with a 1×1 conv + BN shortcut) -> global average pool -> Linear.
BasicBlock: x -> conv3×3 -> BN -> ReLU -> conv3×3 -> BN, + shortcut(x), ReLU.
"""
from vitc import nn
from vitc._checks import expect_fits_memory, expect_int, expect_size

from .registry import register_model

__all__ = ["ResNet", "BasicBlock"]


class BasicBlock(nn.Module):
    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(channels))
        else:
            self.downsample = None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """A small ResNet (the distillation teacher), keyword-only arguments num_classes=10, in_channels=1,
    stem_channels=16, channels=(32, 64), blocks=(1, 1), strides=(2, 2): stage i has blocks[i] BasicBlocks of channels[i], the first with strides[i]."""

    def __init__(self, *, num_classes=10, in_channels=1, stem_channels=16, channels=(32, 64), blocks=(1, 1),
                 strides=(2, 2)):
        super().__init__()
        who = "ResNet"
        for name, v in (("num_classes", num_classes), ("in_channels", in_channels), ("stem_channels", stem_channels)):
            expect_size(v, who, name)
        if not (len(channels) == len(blocks) == len(strides)) or not channels:
            raise ValueError(f"{who}: channels, blocks and strides must be non-empty and of equal length, got "
                             f"{channels!r}, {blocks!r}, {strides!r}")
        channels = [expect_size(c, who, "channels") for c in channels]
        blocks = [expect_size(n, who, "blocks") for n in blocks]
        c_ins = [stem_channels] + channels[:-1]
        # two 3x3 convolutions per block, checked before any stage is built
        expect_fits_memory(sum(9 * c * (ci + c) + 18 * c * c * (n - 1) for c, ci, n in zip(channels, c_ins, blocks)),
                           who, f"channels={tuple(channels)}, blocks={tuple(blocks)}")
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU()
        stages, c_in = [], stem_channels
        for c, n, s in zip(channels, blocks, strides):
            expect_int(c, who, "channels", 1)
            expect_int(n, who, "blocks", 1)
            expect_int(s, who, "strides", 1)
            stage = [BasicBlock(c_in, c, s)] + [BasicBlock(c, c) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            c_in = c
        self.layers = nn.ModuleList(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNet expects images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in self.layers:
            x = stage(x)
        return self.fc(self.avgpool(x).flatten(1))


@register_model
def resnet_mnist(**overrides):
    """A 5-conv-layer ResNet for 28×28×1: stem 16, stages 32 (14×14) and 64 (7×7), ~75k parameters."""
    cfg = dict(num_classes=10, in_channels=1, stem_channels=16, channels=(32, 64), blocks=(1, 1), strides=(2, 2))
    cfg.update(overrides)
    return ResNet(**cfg)
