"""vitc.optim: SGD, Adam, AdamW, RMSprop, Adafactor (the Scaling-ViT variant) over flat parameter buffers (one C call per group per step), and
learning-rate schedules (vitc.optim.lr_scheduler), with torch.optim's names and semantics."""
from . import lr_scheduler
from .adafactor import Adafactor
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .param_groups import param_groups_by_pattern, param_groups_head_body_decay, param_groups_weight_decay
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adafactor", "RMSprop", "lr_scheduler", "param_groups_weight_decay",
           "param_groups_by_pattern", "param_groups_head_body_decay"]
