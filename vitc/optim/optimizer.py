"""Optimizer base class: parameter groups kept in flat buffers so a step is one C call per group.

When a parameter group is added, its parameters are copied into one contiguous float32 buffer
and each Parameter is re-pointed at its slice (``vitc._C.set_data``): the Parameter objects stay
the same (a model's ``state_dict`` and autograd see no difference), but the whole group is one
array. Gradients and optimizer moments get flat buffers of the same layout; after the first
``step`` every ``p.grad`` is a view into the flat gradient buffer, so ``backward()`` accumulates
straight into it, ``zero_grad(set_to_none=False)`` is one memset and ``step`` is one kernel
(csrc/ops/optim.c) over all parameters.

Semantics follow torch.optim: a parameter whose ``.grad`` is None (or that does not require
grad) is skipped and its step count does not advance; ``zero_grad()`` sets grads to None (torch's
default) and the next step gathers them back into the flat buffer; ``param_groups[i]['lr']`` (and
any other option) may be changed between steps; ``state_dict`` has torch's layout.
"""
import numbers
import warnings
from collections import OrderedDict, defaultdict

import numpy as np

from .. import _C
from .._tensor import Tensor, enable_grad, float32, from_numpy, no_grad, zeros
from .._ops.optim_ops import flat_view, flat_zero

__all__ = ["Optimizer", "required"]


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()

# columns of the segment table handed to the C kernels
_START, _NUMEL, _STEP, _ACTIVE = range(4)


class _FlatGroup:
    """The flat storage of one parameter group: params, grads and named state buffers."""

    def __init__(self, params, state_names):
        sizes = [p.numel() for p in params]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes else np.zeros(0, np.int64)
        self.n = int(sum(sizes))
        self.params = params
        self.seg_np = np.zeros((len(params), 4), dtype=np.int64)
        self.seg_np[:, _START] = starts
        self.seg_np[:, _NUMEL] = sizes
        self.seg = from_numpy(self.seg_np)  # zero-copy: the kernels update the step column in place
        self.flat = zeros(self.n)
        self.grad = zeros(self.n)
        self.pviews = [flat_view(self.flat, int(s), p.shape) for s, p in zip(starts, params)]
        self.gviews = [flat_view(self.grad, int(s), p.shape) for s, p in zip(starts, params)]
        self.pptr = [v.data_ptr() for v in self.pviews]
        self.gptr = [v.data_ptr() for v in self.gviews]
        self.buffers = {}
        with no_grad():
            for p, v in zip(params, self.pviews):
                v.copy_(p.detach())
                _C.set_data(p, v)
        for name in state_names:
            self.add_buffer(name)

    def add_buffer(self, name):
        if name not in self.buffers:
            self.buffers[name] = zeros(self.n)
        return self.buffers[name]

    def buffer_view(self, name, i):
        s = int(self.seg_np[i, _START])
        return flat_view(self.buffers[name], s, self.params[i].shape)

    def sync(self):
        """Before a step: re-adopt parameters whose .data was replaced, gather gradients that are
        not views of the flat gradient buffer, and mark which parameters take part."""
        active = self.seg_np[:, _ACTIVE]
        with no_grad():
            for i, p in enumerate(self.params):
                if p.data_ptr() != self.pptr[i]:
                    if tuple(p.shape) != tuple(self.pviews[i].shape):
                        raise RuntimeError(f"optimizer: parameter {i} changed shape from "
                                           f"{tuple(self.pviews[i].shape)} to {tuple(p.shape)}")
                    self.pviews[i].copy_(p.detach())
                    _C.set_data(p, self.pviews[i])
                g = p.grad
                if g is None or not p.requires_grad:
                    active[i] = 0
                    continue
                active[i] = 1
                if g.data_ptr() != self.gptr[i]:
                    self.gviews[i].copy_(g)
                    p.grad = self.gviews[i]

    def zero_grad(self, set_to_none):
        if set_to_none:
            for p in self.params:
                p.grad = None
            return
        with no_grad():
            flat_zero(self.grad)
            for i, p in enumerate(self.params):
                g = p.grad
                if g is not None and g.data_ptr() != self.gptr[i]:
                    p.grad = self.gviews[i]  # now a zeroed view: backward adds into the flat buffer


class Optimizer:
    """Base class (torch.optim.Optimizer semantics). Subclasses set ``_state_names`` (per-parameter
    buffers, e.g. ('exp_avg', 'exp_avg_sq')) and implement ``_step_group(group, flat)``."""

    _state_names = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._flat = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for g in params:
            self.add_param_group(g)

    def _state_names_for(self, group):
        return self._state_names

    def add_param_group(self, param_group):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params) if params is not None else []
        seen, uniq = set(), []
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize vitc Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if p.dtype is not float32:
                raise TypeError(f"optimizer can only optimize float32 tensors, got {p.dtype!r}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if id(p) in seen:
                warnings.warn("optimizer contains a parameter group with duplicate parameters; only the first "
                              "occurrence is kept", UserWarning, stacklevel=3)
                continue
            seen.add(id(p))
            uniq.append(p)
        for other in self.param_groups:
            if any(id(p) in seen for p in other["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        self._check_group(group)
        group["params"] = uniq
        self.param_groups.append(group)
        self._flat.append(_FlatGroup(uniq, self._state_names_for(group)))

    def _check_group(self, group):
        pass

    # ---- stepping -------------------------------------------------------------------------

    def zero_grad(self, set_to_none=True):
        """Reset gradients: to None (torch's default), or to zero in place with set_to_none=False
        — then one memset over the flat gradient buffer, and the next backward accumulates
        straight into it (the fast path the vitc training loop uses)."""
        for fg in self._flat:
            fg.zero_grad(set_to_none)

    def step(self, closure=None):
        """One update of every parameter with a gradient; returns closure() if given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group, fg in zip(self.param_groups, self._flat):
                if fg.n == 0:
                    continue
                self._check_group(group)
                fg.sync()
                if fg.seg_np[:, _ACTIVE].any():
                    self._step_group(group, fg)
        return loss

    def _step_group(self, group, fg):
        raise NotImplementedError

    # ---- state ----------------------------------------------------------------------------

    @property
    def state(self):
        """param -> {'step': tensor, buffer name: view} for parameters that have taken a step
        (a defaultdict, as torch's: other parameters map to {})."""
        out = defaultdict(dict)
        for fg in self._flat:
            for i, p in enumerate(fg.params):
                st = self._param_state(fg, i)
                if st:
                    out[p] = st
        return out

    def _param_state(self, fg, i):
        step = int(fg.seg_np[i, _STEP])
        if step == 0:
            return {}
        st = {"step": from_numpy(np.array(float(step), dtype=np.float32))}
        for name in fg.buffers:
            st[name] = fg.buffer_view(name, i)
        return st

    def state_dict(self):
        """{'state': {index: {...}}, 'param_groups': [{options, 'params': [indices]}]} (torch layout).

        Buffers in 'state' are views of the live optimizer state (like torch); copy them to keep a
        snapshot."""
        state, groups, index = OrderedDict(), [], 0
        for group, fg in zip(self.param_groups, self._flat):
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = list(range(index, index + len(fg.params)))
            groups.append(g)
            for i in range(len(fg.params)):
                st = self._param_state(fg, i)
                if st:
                    state[index + i] = st
            index += len(fg.params)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore options and per-parameter state saved by state_dict() (values may be vitc
        tensors, NumPy arrays or torch tensors)."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("optimizer state_dict must be a dict with 'state' and 'param_groups'")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, own in zip(groups, self.param_groups):
            if len(g["params"]) != len(own["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                                 "optimizer's group")
        state = {int(k): v for k, v in state_dict["state"].items()}
        # validate everything before modifying anything
        for g, fg in zip(groups, self._flat):
            for i, idx in enumerate(g["params"]):
                st = state.get(int(idx))
                if not st:
                    continue
                for name, value in st.items():
                    if name == "step" or value is None:
                        continue
                    arr = np.asarray(value.detach().numpy() if isinstance(value, Tensor) else value)
                    if tuple(arr.shape) != tuple(fg.params[i].shape):
                        raise ValueError(f"optimizer state {name!r} of parameter {idx} has shape {tuple(arr.shape)}, "
                                         f"the parameter has {tuple(fg.params[i].shape)}")
        with no_grad():
            for g, own, fg in zip(groups, self.param_groups, self._flat):
                for k, v in g.items():
                    if k != "params":
                        own[k] = v
                for name in list(fg.buffers):
                    flat_zero(fg.buffers[name])
                fg.seg_np[:, _STEP] = 0
                for i, idx in enumerate(g["params"]):
                    st = state.get(int(idx))
                    if not st:
                        continue
                    step = st.get("step", 0)
                    step = float(step.item() if hasattr(step, "item") else step)
                    fg.seg_np[i, _STEP] = int(round(step))
                    for name, value in st.items():
                        if name == "step" or value is None:
                            continue
                        arr = np.asarray(value.detach().numpy() if isinstance(value, Tensor) else value)
                        buf = fg.add_buffer(name)
                        s = int(fg.seg_np[i, _START])
                        buf.numpy()[s:s + arr.size] = arr.reshape(-1)

    def __repr__(self):
        s = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for k in sorted(group):
                if k != "params":
                    s += f"\n    {k}: {group[k]}"
        return s + "\n)"


def _check_number(v, name, lo=None, hi=None, hi_open=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if lo is not None and not v >= lo:
        raise ValueError(f"Invalid {name}: {v}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ValueError(f"Invalid {name}: {v}")
    return float(v)
