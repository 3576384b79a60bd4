"""Parameter groups with and without weight decay."""

__all__ = ["param_groups_weight_decay"]

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
