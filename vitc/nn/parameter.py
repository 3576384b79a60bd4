"""Parameter: a Tensor that a Module registers as trainable state."""
import numpy as np

from .. import _C
from .._tensor import Tensor, empty, from_numpy

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A leaf Tensor (``requires_grad=True`` by default) that Modules list in ``parameters()``.

    It shares memory with ``data`` (no copy), as torch.nn.Parameter does.
    """

    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter data must be a vitc.Tensor, got {type(data).__name__}")
        return _C.make_subclass(cls, data.detach(), bool(requires_grad))

    def __init__(self, data=None, requires_grad=True):
        pass

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        p = Parameter(from_numpy(np.array(self.detach().numpy(), copy=True)), self.requires_grad)
        memo[id(self)] = p
        return p

    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (np.array(self.detach().numpy(), copy=True), self.requires_grad))


def _rebuild_parameter(arr, requires_grad):
    return Parameter(from_numpy(arr), requires_grad)
