"""Optimizer base class: parameter groups kept in flat buffers so a step is one C call per group.

When a parameter group is added, its parameters are copied into one contiguous float32 buffer
and each Parameter is re-pointed at its slice (``vitc._C.set_data``): the Parameter objects stay
the same (a model's ``state_dict`` and autograd see no difference), but the whole group is one
array. Gradients and optimizer moments get flat buffers of the same layout; after the first
``step`` every ``p.grad`` is a view into the flat gradient buffer, so ``backward()`` accumulates
straight into it, ``zero_grad(set_to_none=False)`` is one memset and ``step`` is one kernel
(csrc/ops/optim.c) over all parameters.

Optimizer state may be stored in bfloat16 (``mu_dtype``/``momentum_dtype``): such buffers are
bfloat16 flat buffers of the same layout; ``state_dict`` hands out bfloat16 views and
``load_state_dict`` rounds float values into them. ``max_grad_norm`` clips the gradients of all
groups together by their global L2 norm before the update (optax ``clip_by_global_norm``; the
flat gradient buffers are scaled in place, as torch.nn.utils.clip_grad_norm_ does).
``state_bytes()`` is the exact size of the optimizer state buffers.

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
from .._tensor import Tensor, enable_grad, float32, from_numpy, no_grad, tensor, zeros
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

    def __init__(self, params):
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

    def add_buffer(self, name, dtype=float32, size=None):
        """The flat state buffer ``name`` (created zero: ``size`` elements, default one per parameter
        element, of ``dtype``)."""
        if name not in self.buffers:
            self.buffers[name] = zeros(self.n if size is None else size, dtype=dtype)
        return self.buffers[name]

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

    def __init__(self, params, defaults, max_grad_norm=None):
        if max_grad_norm is not None:
            max_grad_norm = _check_number(max_grad_norm, "max_grad_norm")
            if not (max_grad_norm > 0 and np.isfinite(max_grad_norm)):
                raise ValueError(f"max_grad_norm must be a positive finite number (or None), got {max_grad_norm}")
        self.max_grad_norm = max_grad_norm
        self.last_grad_norm = None  # the global gradient norm before clipping, when max_grad_norm is set
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
        fg = _FlatGroup(uniq)
        self._init_state(group, fg)
        self._flat.append(fg)

    def _init_state(self, group, fg):
        """Create the group's state buffers (zero)."""
        for name in self._state_names_for(group):
            fg.add_buffer(name, self._buffer_dtype(name))

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
            live = []
            for group, fg in zip(self.param_groups, self._flat):
                if fg.n == 0:
                    continue
                self._check_group(group)
                fg.sync()
                if fg.seg_np[:, _ACTIVE].any():
                    live.append((group, fg))
            if self.max_grad_norm is not None:
                self.last_grad_norm = _clip_global_norm([fg for _, fg in live], self.max_grad_norm)
            for group, fg in live:
                self._step_group(group, fg)
        return loss

    def _step_group(self, group, fg):
        raise NotImplementedError

    # ---- state ----------------------------------------------------------------------------

    def state_bytes(self):
        """Bytes held by the optimizer state buffers (moments, factored statistics), exactly:
        parameters, gradients and the per-parameter step tables are not counted."""
        return sum(b.numel() * b.dtype.np.itemsize for fg in self._flat for b in fg.buffers.values())

    def _buffer_dtype(self, name):
        return float32

    def _state_slots(self, fg, i):
        """{state name: (flat buffer, start, shape)} of parameter i's state (buffers existing now)."""
        s = int(fg.seg_np[i, _START])
        return {name: (buf, s, tuple(fg.params[i].shape)) for name, buf in fg.buffers.items()}

    def _slot_shape(self, fg, i, name):
        """The shape state ``name`` of parameter i must have (None: not a state of this optimizer)."""
        return tuple(fg.params[i].shape)

    def _slot_for_load(self, fg, i, name):
        """(buffer, start, shape) to load state ``name`` of parameter i into; creates the buffer."""
        fg.add_buffer(name, self._buffer_dtype(name))
        return self._state_slots(fg, i)[name]

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
        for name, (buf, start, shape) in self._state_slots(fg, i).items():
            st[name] = flat_view(buf, start, shape)
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
                    shape = tuple(_state_value(value, name, idx).shape)
                    want = self._slot_shape(fg, i, name)
                    if want is None:
                        raise ValueError(f"optimizer state {name!r} of parameter {idx} is not a state of "
                                         f"{type(self).__name__}")
                    if shape != want:
                        raise ValueError(f"optimizer state {name!r} of parameter {idx} has shape {shape}, "
                                         f"expected {want} (the parameter has {tuple(fg.params[i].shape)})")
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
                        buf, start, shape = self._slot_for_load(fg, i, name)
                        v = _state_value(value, name, idx)
                        flat_view(buf, start, shape).copy_(v if v.dtype is buf.dtype else v.to(buf.dtype))

    def __repr__(self):
        s = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for k in sorted(group):
                if k != "params":
                    s += f"\n    {k}: {group[k]}"
        return s + "\n)"


def _state_value(value, name, idx):
    """A state value from a state_dict as a vitc Tensor (float32 or bfloat16); NumPy arrays and
    torch tensors (bfloat16 ones too, via .float()) are accepted."""
    if isinstance(value, Tensor):
        return value.detach()
    if hasattr(value, "detach") and hasattr(value, "float"):  # a torch tensor
        value = value.detach().float().numpy()
    try:
        return tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise TypeError(f"optimizer state {name!r} of parameter {idx}: expected a tensor or array ({e})") from None


def _clip_global_norm(flats, max_norm):
    """Scale the active gradients of all groups by max_norm / ‖g‖ when the global L2 norm ‖g‖
    exceeds max_norm (optax clip_by_global_norm: g / ‖g‖ · max_norm in float32). The norm is
    accumulated in float64; returns it (before clipping)."""
    segs = []
    for fg in flats:
        g = fg.grad.numpy()
        for start, numel, _, active in fg.seg_np:
            if active and numel:
                segs.append(g[start:start + numel])
    total = 0.0
    for x in segs:
        for lo in range(0, x.size, 1 << 20):
            c = x[lo:lo + (1 << 20)].astype(np.float64)
            total += float(np.dot(c, c))
    norm = float(np.sqrt(total))
    if norm > max_norm:
        n32, m32 = np.float32(norm), np.float32(max_norm)
        for x in segs:
            np.divide(x, n32, out=x)
            np.multiply(x, m32, out=x)
    elif not np.isfinite(norm):  # NaN: optax's g / NaN · max_norm makes every gradient NaN
        for x in segs:
            x[...] = np.nan
    return norm


def _check_number(v, name, lo=None, hi=None, hi_open=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if lo is not None and not v >= lo:
        raise ValueError(f"Invalid {name}: {v}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ValueError(f"Invalid {name}: {v}")
    return float(v)
