"""vitc.models: the ViT family and a registry (create_model by name, as timm)."""
from .registry import create_model, is_model, list_models, register_model
from .vit import SCALING_SHAPES, ViT, posemb_sincos_1d, scaling_vit
from .vit_bn import ViTBN, ViTBNFFN
from .deit import DeiT, load_timm_state_dict, to_timm_state_dict
from .pretrained import load_pretrained, resample_abs_pos_embed
from .resnet import ResNet
from .lvvit import LVVIT_SHAPES, load_official_state_dict, lvvit

__all__ = ["ViT", "ViTBNFFN", "ViTBN", "DeiT", "ResNet", "posemb_sincos_1d", "SCALING_SHAPES", "scaling_vit",
           "create_model", "list_models",
           "register_model", "is_model", "LVVIT_SHAPES", "lvvit", "load_official_state_dict", "load_timm_state_dict",
           "to_timm_state_dict", "load_pretrained", "resample_abs_pos_embed"]
