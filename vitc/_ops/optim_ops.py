"""optim_ops ops (see csrc/ops/)."""
__all__ = []
