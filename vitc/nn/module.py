"""Module: the base class of every layer and model, with PyTorch's semantics.

A Module keeps its Parameters, buffers and sub-modules in three ordered dicts filled by attribute
assignment (``self.fc = Linear(...)``), so ``named_parameters()``, ``state_dict()`` and ``repr()``
walk the same tree in the same order as torch.nn.Module.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import _tensor
from .._tensor import RemovableHandle as _RemovableHandle, Tensor, from_numpy, is_grad_enabled, no_grad
from ._backward_hooks import BackwardHookCall
from .parameter import Parameter

__all__ = ["Module"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _check_name(module, name, kind):
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if name == "":
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got: {name}')


def _addindent(s, n):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + line for line in lines[1:])


def _as_array(value, key):
    """NumPy view of a state_dict value (vitc Tensor, NumPy array, anything with __array__)."""
    if isinstance(value, Tensor):
        return value.detach().numpy()
    try:
        return np.asarray(value)
    except Exception as e:  # noqa: BLE001 - any conversion failure is a bad value
        raise TypeError(f"state_dict value for {key!r} is a {type(value).__name__}, not a tensor or array") from e


def _timm_layout_hint(unexpected):
    """A pointer to the converter when unexpected keys are timm's ViT names (vitc names its layers
    after lucidrains' vit-pytorch; vitc/models/deit.py maps the two)."""
    timm_keys = [k for k in unexpected if k in ("pos_embed", "patch_embed.proj.weight") or k.startswith("blocks.")]
    if not timm_keys:
        return ""
    return (f"These are timm's names (e.g. \"{timm_keys[0]}\"): load a timm state_dict with "
            "vitc.models.load_timm_state_dict(model, state_dict). ")


class Module:
    """Base class for all vitc layers and models (PyTorch semantics).

    Subclasses call ``super().__init__()`` first, assign Parameters/Modules as attributes and
    define ``forward``; calling the module runs ``forward`` (and any registered hooks).
    """

    training: bool
    _version = 1

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers_set"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()
        d["_backward_hooks"] = OrderedDict()
        d["_backward_pre_hooks"] = OrderedDict()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        d = self.__dict__
        backward_hooks = d.get("_backward_hooks") or d.get("_backward_pre_hooks")
        if not (self._forward_pre_hooks or self._forward_hooks or backward_hooks):
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            res = hook(self, args)
            if res is not None:
                args = res if isinstance(res, tuple) else (res,)
        bw = BackwardHookCall(self) if backward_hooks and is_grad_enabled() else None
        if bw is not None:
            args = bw.setup_inputs(args)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            res = hook(self, args, out)
            if res is not None:
                out = res
        return bw.setup_output(out) if bw is not None else out

    def register_forward_hook(self, hook):
        """hook(module, args, output) -> None or a replacement output; returns a handle with remove()."""
        h = _RemovableHandle(self._forward_hooks)
        self._forward_hooks[h.id] = hook
        return h

    def register_forward_pre_hook(self, hook):
        """hook(module, args) -> None or replacement args; returns a handle with remove()."""
        h = _RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[h.id] = hook
        return h

    def register_full_backward_pre_hook(self, hook):
        """hook(module, grad_output) -> None or a replacement grad_output tuple, called when the
        gradient of the module's output is known, before it flows into the module (torch semantics;
        the module must return one Tensor, see vitc/nn/_backward_hooks.py). Returns a handle."""
        return self._add_backward_hook("_backward_pre_hooks", hook)

    def register_full_backward_hook(self, hook):
        """hook(module, grad_input, grad_output) -> None or a replacement grad_input tuple, called
        once the gradients of the module's tensor inputs are known (None for inputs that need none).
        Limits against torch: vitc/nn/_backward_hooks.py. Returns a handle with remove()."""
        return self._add_backward_hook("_backward_hooks", hook)

    def _add_backward_hook(self, attr, hook):
        if not callable(hook):
            raise TypeError(f"backward hook must be callable, got {type(hook).__name__}")
        hooks = self.__dict__.setdefault(attr, OrderedDict())
        h = _RemovableHandle(hooks)
        hooks[h.id] = hook
        return h

    # ---- registration ---------------------------------------------------------------------

    def register_parameter(self, name, param):
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name(self, name, "parameter")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is None:
            self._parameters[name] = None
            return
        if not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(vitc.nn.Parameter or None required)")
        if not param.is_leaf:
            raise ValueError(f"Cannot assign non-leaf Tensor to parameter '{name}'")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name(self, name, "buffer")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(vitc.Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        _check_name(self, name, "module")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._remove_from(name, d, "_buffers", "_modules")
            d.pop(name, None)
            self.register_parameter(name, value)
            return
        if params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(vitc.nn.Parameter or None expected)")
            self.register_parameter(name, value)
            return
        modules = d.get("_modules")
        if isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._remove_from(name, d, "_parameters", "_buffers")
            d.pop(name, None)
            modules[name] = value
            return
        if modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(vitc.nn.Module or None expected)")
            modules[name] = value
            return
        buffers = d.get("_buffers")
        if buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(vitc.Tensor or None expected)")
            buffers[name] = value
            return
        object.__setattr__(self, name, value)

    @staticmethod
    def _remove_from(name, d, *dicts):
        for k in dicts:
            if k in d:
                d[k].pop(name, None)
                if k == "_buffers":
                    d["_non_persistent_buffers_set"].discard(name)

    def __getattr__(self, name):
        d = self.__dict__
        for k in ("_parameters", "_buffers", "_modules"):
            store = d.get(k)
            if store is not None and name in store:
                return store[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for k in ("_parameters", "_buffers", "_modules"):
            store = self.__dict__.get(k)
            if store is not None and name in store:
                del store[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = set(super().__dir__())
        for k in ("_parameters", "_buffers", "_modules"):
            keys.update(self.__dict__.get(k, {}))
        return sorted(keys)

    def __setstate__(self, state):
        self.__dict__.update(state)

    # ---- traversal ------------------------------------------------------------------------

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, attr, prefix, recurse, remove_duplicate):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for k, v in getattr(m, attr).items():
                if v is None:
                    continue
                if remove_duplicate:
                    if id(v) in seen:
                        continue
                    seen.add(id(v))
                yield mprefix + ("." if mprefix else "") + k, v

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        if target == "":
            return self
        m = self
        for item in target.split("."):
            if item not in m._modules or m._modules[item] is None:
                raise AttributeError(f"{m._get_name()} has no attribute `{item}`")
            m = m._modules[item]
        return m

    def get_parameter(self, target):
        mod_path, _, name = target.rpartition(".")
        m = self.get_submodule(mod_path)
        if name not in m._parameters:
            raise AttributeError(f"{m._get_name()} has no parameter `{name}`")
        return m._parameters[name]

    def get_buffer(self, target):
        mod_path, _, name = target.rpartition(".")
        m = self.get_submodule(mod_path)
        if name not in m._buffers:
            raise AttributeError(f"{m._get_name()} has no buffer `{name}`")
        return m._buffers[name]

    # ---- modes and gradients --------------------------------------------------------------

    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Reset parameter gradients: to None (default, as torch) or to zeros in place."""
        with no_grad():
            for p in self.parameters():
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args, **kwargs):
        """CPU only: returns self (accepted so PyTorch code runs unchanged)."""
        for a in list(args) + list(kwargs.values()):
            if a not in (None, "cpu") and not isinstance(a, _tensor.dtype):
                raise ValueError(f"vitc runs on the CPU only; cannot move a module to {a!r}")
            if isinstance(a, _tensor.dtype) and a is not _tensor.float32:
                raise TypeError(f"vitc modules compute in float32; cannot convert to {a!r}")
        return self

    def cpu(self):
        return self

    def float(self):
        return self

    def num_parameters(self, trainable_only=False):
        """Number of scalar parameters (optionally only those that require grad)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- state_dict -----------------------------------------------------------------------

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """Ordered name -> tensor for every parameter and persistent buffer (sharing memory)."""
        if args:
            raise TypeError("state_dict() takes keyword arguments only (destination=, prefix=, keep_vars=)")
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy tensors from state_dict into this module's parameters and buffers (in place).

        Values may be vitc Tensors, NumPy arrays or anything array-like (e.g. torch tensors).
        strict: raise RuntimeError listing missing and unexpected keys (as torch). Shape
        mismatches always raise. assign: replace the tensors instead of copying into them.
        Returns the named tuple (missing_keys, unexpected_keys).
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in own]
        errors, todo = [], []
        for key, t in own.items():
            if key not in state_dict:
                continue
            arr = _as_array(state_dict[key], key)
            if tuple(arr.shape) != tuple(t.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape {tuple(arr.shape)} from "
                              f"checkpoint, the shape in current model is {tuple(t.shape)}.")
            elif arr.dtype.kind not in "biuf":
                errors.append(f"dtype mismatch for {key}: cannot copy {arr.dtype} into {t.dtype!r}")
            else:
                todo.append((key, t, arr))
        if strict:
            msgs = []
            if unexpected:
                msgs.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ". "
                            + _timm_layout_hint(unexpected))
            if missing:
                msgs.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". ")
            errors = msgs + errors
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t" + "\n\t".join(errors))
        with no_grad():  # nothing is modified unless every entry is valid
            for key, t, arr in todo:
                src = from_numpy(np.require(arr, dtype=t.dtype.np, requirements="C"))
                if assign:
                    owner_path, _, name = key.rpartition(".")
                    owner = self.get_submodule(owner_path)
                    if isinstance(t, Parameter):
                        src = Parameter(src, t.requires_grad)
                    setattr(owner, name, src)
                else:
                    t.copy_(src)
        return _IncompatibleKeys(missing, unexpected)

    # ---- repr -----------------------------------------------------------------------------

    def _get_name(self):
        return type(self).__name__

    def extra_repr(self):
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = []
        for key, m in self._modules.items():
            child_lines.append(f"({key}): " + _addindent(repr(m), 2))
        lines = extra_lines + child_lines
        s = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                s += extra_lines[0]
            else:
                s += "\n  " + "\n  ".join(lines) + "\n"
        return s + ")"
