"""Containers: Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict."""
import operator
from collections import OrderedDict

from .._tensor import Tensor
from .module import Module, _addindent
from .parameter import Parameter

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]


def _index(idx, n, who):
    try:
        idx = operator.index(idx)
    except TypeError:
        raise TypeError(f"{who} indices must be integers or slices, not {type(idx).__name__}") from None
    if not -n <= idx < n:
        raise IndexError(f"index {idx} is out of range for {who} of length {n}")
    return idx + n if idx < 0 else idx


class Sequential(Module):
    """Modules applied in order: Sequential(a, b, c)(x) = c(b(a(x))). Also Sequential(OrderedDict)."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, m in args[0].items():
                self.add_module(key, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_index(idx, len(self), "Sequential")]

    def __setitem__(self, idx, module):
        key = list(self._modules.keys())[_index(idx, len(self), "Sequential")]
        self.add_module(key, module)

    def __delitem__(self, idx):
        keys = list(self._modules.keys())
        for k in (keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(self), "Sequential")]]):
            del self._modules[k]
        # renumber so indices stay 0..n-1 (torch does the same)
        items = list(self._modules.values())
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def forward(self, input):
        for m in self._modules.values():
            input = m(input)
        return input


class _RegisteredList(Module):
    """A list over one of the module's registries (``_store``), entries named '0', '1', …;
    subclasses register a value (``_register``) and say which single value ``extend`` refuses
    (``_single_value``)."""

    _store = None

    def __init__(self, values=None):
        super().__init__()
        if values is not None:
            self.extend(values)

    def _entries(self):
        return self.__dict__[self._store]

    def __len__(self):
        return len(self._entries())

    def __iter__(self):
        return iter(self._entries().values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._entries().values())[idx])
        return self._entries()[str(_index(idx, len(self), type(self).__name__))]

    def __setitem__(self, idx, value):
        self._register(str(_index(idx, len(self), type(self).__name__)), value)

    def __iadd__(self, values):
        return self.extend(values)

    def append(self, value):
        self._register(str(len(self)), value)
        return self

    def extend(self, values):
        if self._single_value(values):
            raise TypeError(f"{type(self).__name__}.extend should be called with an iterable, got a "
                            f"{type(values).__name__}")
        for v in values:
            self.append(v)
        return self


class ModuleList(_RegisteredList):
    """A list of modules, registered so their parameters are visible."""

    _store = "_modules"

    def _register(self, key, module):
        self.add_module(key, module)

    @staticmethod
    def _single_value(values):
        return isinstance(values, Module) and not isinstance(values, (ModuleList, Sequential))

    def __delitem__(self, idx):
        items = list(self._modules.values())
        if isinstance(idx, slice):
            del items[idx]
        else:
            del items[_index(idx, len(self), "ModuleList")]
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward; iterate over it instead")

    def __repr__(self):
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        # runs of identical blocks print once, as torch: "(0-5): 6 x Block(...)"
        runs = []
        for i, r in enumerate(reprs):
            if runs and runs[-1][2] == r:
                runs[-1][1] = i
            else:
                runs.append([i, i, r])
        lines = []
        for a, b, r in runs:
            lines.append(_addindent(f"({a}): {r}" if a == b else f"({a}-{b}): {b - a + 1} x {r}", 2))
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


class _RegisteredDict(Module):
    """An ordered dict over one of the module's registries (``_store``: '_modules' or '_parameters');
    subclasses say how a value is registered (``__setitem__``) and how ``update`` orders a plain dict."""

    _store = None
    _sort_plain_dicts = False

    def __init__(self, values=None):
        super().__init__()
        if values is not None:
            self.update(values)

    def _entries(self):
        return self.__dict__[self._store]

    def __getitem__(self, key):
        return self._entries()[key]

    def __delitem__(self, key):
        del self._entries()[key]

    def __len__(self):
        return len(self._entries())

    def __iter__(self):
        return iter(self._entries())

    def __contains__(self, key):
        return key in self._entries()

    def keys(self):
        return self._entries().keys()

    def values(self):
        return self._entries().values()

    def items(self):
        return self._entries().items()

    def get(self, key, default=None):
        return self._entries().get(key, default)

    def pop(self, key):
        v = self[key]
        del self[key]
        return v

    def clear(self):
        self._entries().clear()

    def update(self, values):
        """Add the entries of a mapping or of (key, value) pairs (a plain dict in sorted key order
        where torch sorts it: ParameterDict)."""
        who = type(self).__name__
        if hasattr(values, "items"):
            plain = not isinstance(values, (OrderedDict, _RegisteredDict))
            items = sorted(values.items()) if plain and self._sort_plain_dicts else values.items()
        else:
            items = values
        for entry in items:
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise TypeError(f"{who}.update expects a mapping or an iterable of (key, value) pairs")
            self[entry[0]] = entry[1]

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward; index it instead")


class ModuleDict(_RegisteredDict):
    """An ordered dict of modules, registered so their parameters are visible."""

    _store = "_modules"

    def __setitem__(self, key, module):
        self.add_module(key, module)


def _as_parameter(value, who):
    """A Parameter for value: Parameters as they are, other tensors wrapped (as torch), None kept."""
    if value is None or isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value)
    raise TypeError(f"{who} holds vitc Tensors/Parameters (or None), got {type(value).__name__}")


def _parameter_repr(p):
    if p is None:
        return "None"
    return f"Parameter containing: [vitc.{p.dtype.name} of size {'x'.join(map(str, p.shape)) or '()'}]"


class ParameterList(_RegisteredList):
    """A list of Parameters registered under the names '0', '1', … (torch.nn.ParameterList), so
    parameters() and state_dict() see them. Plain tensors are wrapped in Parameter."""

    _store = "_parameters"

    def _register(self, key, value):
        self.register_parameter(key, _as_parameter(value, "ParameterList"))

    @staticmethod
    def _single_value(values):
        return isinstance(values, Tensor)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ParameterList has no forward; index it instead")

    def extra_repr(self):
        return "\n".join(f"({k}): {_parameter_repr(p)}" for k, p in self._parameters.items())


class ParameterDict(_RegisteredDict):
    """An ordered dict of Parameters registered under their keys (torch.nn.ParameterDict), so
    parameters() and state_dict() see them. Plain tensors are wrapped in Parameter; a plain dict is
    added in sorted key order, an OrderedDict / ParameterDict / list in its own order (as torch)."""

    _store = "_parameters"
    _sort_plain_dicts = True

    def __setitem__(self, key, value):
        self.register_parameter(key, _as_parameter(value, "ParameterDict"))

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def extra_repr(self):
        return "\n".join(f"({k}): {_parameter_repr(p)}" for k, p in self._parameters.items())
