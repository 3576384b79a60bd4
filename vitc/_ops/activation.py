"""activation ops (see csrc/ops/)."""
__all__ = []
