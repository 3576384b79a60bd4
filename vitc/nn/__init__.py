"""vitc.nn: Modules, Parameters, layers and the ViT building blocks (torch.nn names and semantics)."""
from . import functional, init, utils
from .activation import GELU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d
from .dropout import Dropout, DropPath
from .embedding import Embedding
from .linear import Flatten, Identity, Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss, MSELoss, SigmoidCrossEntropyLoss
from .attention_pool import MAPHead
from .module import Module
from .multihead_attention import MultiheadAttention
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm, TokenBatchNorm
from .parameter import Parameter
from .patch_embed import ConvPatchEmbed
from .transformer import Attention, FeedForward, Patchify, Transformer, TransformerBlock

__all__ = [
    "Module", "Parameter", "functional", "init", "utils",
    "Linear", "Identity", "Flatten", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Embedding", "MultiheadAttention",
    "GELU", "ReLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "Dropout", "DropPath",
    "LayerNorm", "BatchNorm1d", "BatchNorm2d", "TokenBatchNorm",
    "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "CrossEntropyLoss", "MSELoss", "KLDivLoss", "BCEWithLogitsLoss", "SigmoidCrossEntropyLoss",
    "Patchify", "ConvPatchEmbed", "Attention", "FeedForward", "TransformerBlock", "Transformer", "MAPHead",
]
