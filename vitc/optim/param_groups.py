"""Parameter groups with and without weight decay."""
from .._checks import expect_number

__all__ = ["param_groups_weight_decay", "param_groups_by_pattern", "param_groups_head_body_decay"]

# vitc's names for the class/distillation tokens and the position embedding (vitc.models)
NO_DECAY = ("pos_embedding", "cls_token", "dist_token")


def param_groups_weight_decay(model, weight_decay, no_decay_names=NO_DECAY):
    """Two groups for an optimizer, as timm's ``param_groups_weight_decay`` (timm/optim/_param_groups.py,
    the DeiT recipe): ``weight_decay`` for tensors with ndim >= 2 whose last name part is not in
    ``no_decay_names``; 0 for biases, norm parameters, tokens and the position embedding.
    Parameters with requires_grad=False are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.split(".")[-1] in no_decay_names else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


# the classifier kernels of vitc's models: ViT's mlp_head, DeiT's dist_head, ResNet-style head/fc
HEAD_KERNELS = r"(^|\.)(mlp_head|dist_head|head|fc)\.weight$"


def param_groups_by_pattern(model, rules, default=0.0):
    """Parameter groups keyed by weight decay, one rule list for the whole model.

    rules: [(regex, weight_decay), ...] matched (re.search) against each kernel's name (a parameter
    named ``*.weight`` with ndim >= 2: Linear and conv weights); the first rule that matches wins.
    Every other parameter (biases, norm weights, tokens, position embedding, the MAP probe) and every
    kernel no rule matches gets ``default``. Parameters with requires_grad=False are left out.
    Returns one group per distinct decay, in first-seen order, for any vitc optimizer; with AdamW (or
    Adafactor) the decay is decoupled and multiplied by the group's scheduled lr, as big_vision's
    ``wd_mults`` (configs/proj/scaling_laws/train_vit_g.py)."""
    import re
    compiled = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)):
            raise TypeError(f"param_groups_by_pattern: rules[{i}] must be a (regex, weight_decay) pair, got {rule!r}")
        try:
            compiled.append((re.compile(rule[0]), expect_number(rule[1], "param_groups_by_pattern",
                                                                f"rules[{i}] weight decay", lo=0.0)))
        except re.error as e:
            raise ValueError(f"param_groups_by_pattern: rules[{i}] is not a valid regex: {e}") from None
    default = expect_number(default, "param_groups_by_pattern", "default", lo=0.0)
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = default
        if p.ndim >= 2 and name.endswith("weight"):
            wd = next((w for rx, w in compiled if rx.search(name)), default)
        groups.setdefault(wd, []).append(p)
    return [{"params": ps, "weight_decay": wd} for wd, ps in groups.items()]


def param_groups_head_body_decay(model, wd_head=3.0, wd_body=0.03, head=HEAD_KERNELS):
    """Decoupled head/body weight decay (Zhai et al., "Scaling Vision Transformers", arXiv 2106.04560
    §3.1): the classifier kernel (``head`` regex) decays with ``wd_head``, every other kernel with
    ``wd_body``, nothing else decays. With AdamW the per-step decay is lr_t·wd (the paper's 3.0 and 0.03
    times the lr)."""
    return param_groups_by_pattern(model, [(head, wd_head), (r".", wd_body)])
