"""Module full backward hooks (torch.nn.Module.register_full_backward_hook / _pre_hook) built on
tensor hooks (Tensor.register_hook).

As torch/utils/hooks.py BackwardHook does, one call of a hooked module passes each input tensor that
requires grad, and its output, through an identity op, and hooks the identities' gradients: the
output's gradient is grad_output (the pre hooks may replace it before it flows into the module);
once every hooked input has its gradient, the full hooks see (grad_input, grad_output) and may
replace grad_input. Differences from torch, which joins all inputs in one autograd node: the module
must return one Tensor; with several tensor inputs the hooks run when all of them have received a
gradient in this backward (an input the output does not depend on keeps them from running), and a
replacement grad_input may change only the input whose gradient arrived last.
"""
from .._tensor import Tensor, _call

__all__ = []


def _identity(t):
    return _call("reshape", (t,), shape=tuple(t.shape))


def _replacement(res, old, who, what):
    """A hook's return value: None keeps ``old``; otherwise a tuple of the same length."""
    if res is None:
        return old
    if not isinstance(res, (tuple, list)) or len(res) != len(old):
        raise RuntimeError(f"{who} returned {type(res).__name__}; expected None or a tuple of {len(old)} "
                           f"{what} gradients")
    for a, b in zip(res, old):
        if a is not None and b is not None and tuple(a.shape) != tuple(b.shape):
            raise RuntimeError(f"{who} returned a {what} gradient of shape {tuple(a.shape)}, expected {tuple(b.shape)}")
    return tuple(res)


class BackwardHookCall:
    """The hooks of one forward call of ``module``."""

    def __init__(self, module):
        self.module = module
        self.grad_output = None

    def setup_inputs(self, args):
        self.grad_input = [None] * len(args)
        self.hooked = []
        new = list(args)
        for i, a in enumerate(args):
            if isinstance(a, Tensor) and a.requires_grad:
                new[i] = _identity(a)
                new[i].register_hook(self._input_hook(i))
                self.hooked.append(i)
        self.pending = len(self.hooked)
        return tuple(new)

    def setup_output(self, out):
        if not isinstance(out, Tensor):
            raise NotImplementedError(f"{type(self.module).__name__}: full backward hooks need a module that "
                                      f"returns one Tensor, this one returned {type(out).__name__}")
        if not out.requires_grad:
            return out
        out = _identity(out)
        out.register_hook(self._output_hook)
        return out

    def _output_hook(self, grad):
        m = self.module
        grads = (grad,)
        for hook in list(m.__dict__.get("_backward_pre_hooks", {}).values()):
            grads = _replacement(hook(m, grads), grads, "a full backward pre hook", "output")
        self.grad_output = grads
        self.grad_input = [None] * len(self.grad_input)
        self.pending = len(self.hooked)
        if not self.hooked:  # no input needs a gradient: the hooks see grad_input of Nones now (torch too)
            self._run_full_hooks()
        return grads[0]

    def _run_full_hooks(self):
        m, grads = self.module, tuple(self.grad_input)
        for hook in list(m.__dict__.get("_backward_hooks", {}).values()):
            grads = _replacement(hook(m, grads, self.grad_output), grads, "a full backward hook", "input")
        return grads

    def _input_hook(self, i):
        def hook(grad):
            self.grad_input[i] = grad
            self.pending -= 1
            if self.pending:
                return None
            before = tuple(self.grad_input)
            after = self._run_full_hooks()
            for j, (a, b) in enumerate(zip(after, before)):
                if j != i and a is not b:
                    raise RuntimeError(f"{type(self.module).__name__}: a full backward hook replaced the gradient of "
                                       f"input {j}, which has already flowed on; vitc lets it replace only the "
                                       f"gradient that arrived last (input {i})")
            return after[i]

        return hook
