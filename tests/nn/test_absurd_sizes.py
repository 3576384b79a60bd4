"""Absurd size arguments on the model constructors are refused up front with a ValueError naming the
argument (before, nn.Transformer(depth=10**30) hung building its list of drop-path rates)."""
import pytest

from vitc import nn
from vitc.models.resnet import ResNet
from vitc.models.vit import ViT

HUGE = 10 ** 30
SMALL = dict(image_size=32, patch_size=4, num_classes=10, dim=8, depth=1, heads=1, mlp_dim=8)


@pytest.mark.parametrize("build, words", [
    (lambda: nn.Transformer(8, HUGE, 2, 4, 16), "depth"),
    (lambda: nn.Transformer(8, 10 ** 9, 2, 4, 16), "depth=1000000000"),  # fits 2^40, not RAM
    (lambda: nn.Transformer(HUGE, 2, 2, 4, 16), "dim"),
    (lambda: nn.Transformer(8, 2, 10 ** 12, 4, 16), "heads=1000000000000"),
    (lambda: nn.Transformer(8, 2, 2, 4, HUGE), "mlp_dim"),
    (lambda: nn.Attention(8, heads=HUGE), "heads"),
    (lambda: nn.FeedForward(8, 10 ** 12), "hidden_dim=1000000000000"),
    (lambda: ViT(**dict(SMALL, depth=HUGE)), "depth"),
    (lambda: ViT(**dict(SMALL, image_size=HUGE)), "image_size"),
    (lambda: ViT(**dict(SMALL, image_size=2 ** 22, patch_size=1)), "image_size=(4194304, 4194304)"),
    (lambda: ViT(**dict(SMALL, num_classes=HUGE)), "num_classes"),
    (lambda: ResNet(blocks=(HUGE, 1)), "blocks"),
    (lambda: ResNet(blocks=(10 ** 10, 1)), "blocks=(10000000000, 1)"),
])
def test_absurd_size_is_refused_naming_the_argument(build, words):
    with pytest.raises(ValueError, match=r"^(Transformer|Attention|FeedForward|ViT|ResNet): .*" + words.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_ordinary_sizes_still_build():
    assert len(nn.Transformer(8, 3, 2, 4, 16).layers) == 3
    assert ViT(**SMALL).transformer is not None
    assert len(ResNet().layers) == 2
