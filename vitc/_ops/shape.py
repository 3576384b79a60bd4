"""Shape ops: reshape/view/flatten, permute/transpose, contiguous, expand/broadcast, squeeze/unsqueeze,
cat/stack, split/chunk/unbind, narrow/select, flip, repeat."""
import numbers

__all__ = ['reshape', 'view', 'flatten', 'permute', 'transpose', 't', 'contiguous', 'broadcast_to',
           'broadcast_tensors', 'broadcast_shapes', 'squeeze', 'unsqueeze', 'cat', 'concat', 'concatenate', 'stack',
           'split', 'chunk', 'unbind', 'narrow', 'select', 'flip', 'movedim']

from .. import _C
from .._checks import expect_int
from .._tensor import Tensor, _call, expect_tensor, register, _wrap_dim, float32, int64, bool_

_MAX_IN = _C.MAX_IN


def _shape_arg(shape, who):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{who}: sizes must be ints, got {type(s).__name__}")
    return tuple(int(s) for s in shape)


def _infer(shape, numel, who):
    if shape.count(-1) > 1:
        raise ValueError(f"{who}: only one dimension can be inferred")
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if known == 0 or numel % known:
            raise ValueError(f"{who}: shape {shape} is invalid for input of {numel} elements")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    return shape


def reshape(input, *shape):
    expect_tensor(input, "reshape")
    shape = _infer(_shape_arg(shape, "reshape"), input.numel(), "reshape")
    return _call("reshape", (input,), shape=shape)


def view(input, *shape):
    expect_tensor(input, "view")
    """Like reshape but refuses to copy (PyTorch's view contract)."""
    shape = _infer(_shape_arg(shape, "view"), input.numel(), "view")
    out = _call("reshape", (input,), shape=shape)
    if input.numel() and out.data_ptr() != input.data_ptr():
        raise RuntimeError(f"view: shape {shape} is not compatible with the input's strides; use reshape()")
    return out


def flatten(input, start_dim=0, end_dim=-1):
    expect_tensor(input, "flatten")
    if input.ndim == 0:
        return reshape(input, 1)
    s, e = _wrap_dim(start_dim, input.ndim), _wrap_dim(end_dim, input.ndim)
    if s > e:
        raise ValueError("flatten: start_dim must not come after end_dim")
    n = 1
    for d in input.shape[s:e + 1]:
        n *= d
    return reshape(input, input.shape[:s] + (n,) + input.shape[e + 1:])


def permute(input, *dims):
    expect_tensor(input, "permute")
    dims = _shape_arg(dims, "permute")
    if len(dims) != input.ndim:
        raise ValueError(f"permute: {len(dims)} dims given for a {input.ndim}-d tensor")
    return _call("permute", (input,), dims=dims)


def transpose(input, dim0, dim1):
    expect_tensor(input, "transpose")
    n = input.ndim
    if n == 0:
        return input
    d0, d1 = _wrap_dim(dim0, n), _wrap_dim(dim1, n)
    perm = list(range(n))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return _call("permute", (input,), dims=perm)


def t(input):
    expect_tensor(input, "t")
    if input.ndim > 2:
        raise ValueError(f"t: expects a tensor with <= 2 dims, got {input.ndim}")
    return transpose(input, 0, 1) if input.ndim == 2 else input


def contiguous(input):
    expect_tensor(input, "contiguous")
    return input if input.is_contiguous() else _call("contiguous", (input,))


def _size_int(x, who, name):
    """An int; a one-element int64 Tensor counts as its value (as PyTorch's sizes accept)."""
    if isinstance(x, Tensor) and x.numel() == 1 and x.dtype is int64:
        return int(x.item())
    return expect_int(x, who, name)


# ---- expand / broadcast -------------------------------------------------------------------

def expand(input, *sizes):
    """A view with size-1 dims repeated by stride 0 (-1 keeps a dim); no copy."""
    expect_tensor(input, "expand")
    return _call("expand", (input,), shape=_shape_arg(sizes, "expand"))


def expand_as(input, other):
    return expand(input, expect_tensor(other, "expand_as", "other").shape)


def broadcast_shapes(*shapes):
    out = []
    for s in shapes:
        s = (s,) if isinstance(s, numbers.Integral) else tuple(s)
        if len(s) > len(out):
            out = [1] * (len(s) - len(out)) + out
        for i, d in enumerate(s):
            j = len(out) - len(s) + i
            if out[j] == 1:
                out[j] = d
            elif d != 1 and d != out[j]:
                raise ValueError(f"broadcast_shapes: shapes {shapes} cannot be broadcast together")
    return tuple(out)


def broadcast_to(input, shape):
    return expand(expect_tensor(input, "broadcast_to"), _shape_arg((shape,), "broadcast_to"))


def broadcast_tensors(*tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)):
        tensors = tuple(tensors[0])
    shape = broadcast_shapes(*(expect_tensor(x, "broadcast_tensors").shape for x in tensors))
    return tuple(x if x.shape == shape else expand(x, shape) for x in tensors)


# ---- squeeze / unsqueeze / movedim ---------------------------------------------------------

def squeeze(input, dim=None):
    """Drop size-1 dims (all, or those in dim); a view."""
    expect_tensor(input, "squeeze")
    n = input.ndim
    if dim is None:
        dims = set(range(n))
    elif isinstance(dim, (tuple, list)):
        dims = {_wrap_dim(d, n) for d in dim}
    else:
        dims = {_wrap_dim(dim, n)}
    shape = tuple(s for i, s in enumerate(input.shape) if not (i in dims and s == 1))
    return _call("reshape", (input,), shape=shape)


def unsqueeze(input, dim):
    """Insert a size-1 dim at dim (in [-ndim-1, ndim]); a view."""
    expect_tensor(input, "unsqueeze")
    d = _wrap_dim(dim, input.ndim + 1)
    shape = input.shape[:d] + (1,) + input.shape[d:]
    return _call("reshape", (input,), shape=shape)


def movedim(input, source, destination):
    expect_tensor(input, "movedim")
    src = (source,) if isinstance(source, numbers.Integral) else tuple(source)
    dst = (destination,) if isinstance(destination, numbers.Integral) else tuple(destination)
    if len(src) != len(dst):
        raise ValueError("movedim: source and destination must have the same number of dims")
    n = input.ndim
    src, dst = [_wrap_dim(d, n) for d in src], [_wrap_dim(d, n) for d in dst]
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ValueError("movedim: repeated dim")
    if n == 0:  # a 0-d tensor: dims 0 and -1 are valid (checked above) and there is nothing to move
        return permute(input, [])
    perm = [None] * n
    for s, d in zip(src, dst):
        perm[d] = s
    rest = iter(i for i in range(n) if i not in src)
    perm = [p if p is not None else next(rest) for p in perm]
    return permute(input, perm)


# ---- cat / stack ----------------------------------------------------------------------------

def _tensor_list(tensors, who):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (tuple, list)):
        raise TypeError(f"{who}: expected a list or tuple of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{who}: expected a non-empty list of tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise TypeError(f"{who}: element {i} must be a vitc.Tensor, got {type(x).__name__}")
    kinds = {x.dtype for x in tensors}
    if len(kinds) > 1:  # PyTorch's promotion among our dtypes
        to = float32 if float32 in kinds else int64
        tensors = [x if x.dtype is to else x.to(to) for x in tensors]
    return list(tensors)


def _cat_call(tensors, dim, stack):
    # the op table takes at most MAX_IN tensors per call: groups, then the groups' results
    if len(tensors) <= _MAX_IN:
        return _call("cat", tuple(tensors), dim=dim, stack=stack)
    # (stacked groups already have the new dim: they join along it)
    parts = [_cat_call(tensors[i:i + _MAX_IN], dim, stack) for i in range(0, len(tensors), _MAX_IN)]
    return _cat_call(parts, dim, 0)


def cat(tensors, dim=0):
    """Concatenate along an existing dim (1-d empty tensors are skipped, as in PyTorch)."""
    tensors = _tensor_list(tensors, "cat")
    dim = _size_int(dim, "cat", "dim")
    if len(tensors) > _MAX_IN:  # grouped calls would number tensors within a group: check here
        full = [(i, x.shape) for i, x in enumerate(tensors) if x.shape != (0,)]
        if full:
            i0, ref = full[0]
            d = _wrap_dim(dim, len(ref))
            for i, s in full:
                if len(s) != len(ref) or any(a != b for k, (a, b) in enumerate(zip(s, ref)) if k != d):
                    raise ValueError(f"cat: shapes must match except in dimension {d}: tensor {i0} has shape {ref}, "
                                     f"tensor {i} has shape {s}")
    return _cat_call(tensors, dim, 0)


concat = concatenate = cat


def stack(tensors, dim=0):
    """Join same-shape tensors along a new dim."""
    tensors = _tensor_list(tensors, "stack")
    dim = _size_int(dim, "stack", "dim")
    for i, x in enumerate(tensors):
        if x.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have the same shape: tensor 0 has shape "
                             f"{tensors[0].shape}, tensor {i} has shape {x.shape}")
    nd = tensors[0].ndim + 1
    if not -nd <= dim < nd:
        raise _C.IndexError(f"stack: dim {dim} out of range for {nd}-d results")
    return _cat_call(tensors, dim + nd if dim < 0 else dim, 1)


# ---- split / chunk / unbind / narrow / select -----------------------------------------------

def _slice_args(input, dim, start, length, step=1):
    args = []
    for d, s in enumerate(input.shape):
        args += (start, length, step) if d == dim else (0, s, 1)
    return tuple(args)


def narrow(input, dim, start, length):
    """input[..., start:start+length, ...] along dim; a view (start may be negative)."""
    expect_tensor(input, "narrow")
    if input.ndim == 0:
        raise ValueError("narrow: cannot narrow a 0-d tensor")
    dim = _wrap_dim(dim, input.ndim)
    start, length = _size_int(start, "narrow", "start"), _size_int(length, "narrow", "length")
    size = input.shape[dim]
    if start < 0:
        start += size
    if not 0 <= start <= size or length < 0 or start + length > size:
        raise _C.IndexError(f"narrow: start ({start}) + length ({length}) exceeds dimension {dim} of size {size}")
    return _call("slice", (input,), ranges=_slice_args(input, dim, start, length))


def select(input, dim, index):
    """input[..., index, ...] along dim, dropping the dim; a view."""
    expect_tensor(input, "select")
    if input.ndim == 0:
        raise _C.IndexError("select: cannot select from a 0-d tensor")
    dim = _wrap_dim(dim, input.ndim)
    index, size = _size_int(index, "select", "index"), input.shape[dim]
    if not -size <= index < size:
        raise _C.IndexError(f"select: index {index} is out of bounds for dimension {dim} with size {size}")
    return _call("slice", (input,), ranges=_slice_args(input, dim, index % size if size else index, 0, 0))


def _pieces(input, sizes, dim, drop):
    """Views of consecutive pieces of the given sizes along dim: one SPLIT node for up to 3 pieces
    (one gradient buffer in backward), else one slice/select view per piece."""
    if len(sizes) <= 3:
        out = _call("split", (input,), dim=dim, drop=int(drop), sizes=sizes)
        return out if isinstance(out, tuple) else (out,)
    res, pos = [], 0
    for s in sizes:
        res.append(_call("slice", (input,), ranges=_slice_args(input, dim, pos, 0 if drop else s, 0 if drop else 1)))
        pos += s
    return tuple(res)


def split(tensor, split_size_or_sections, dim=0):
    """Pieces of split_size (the last may be smaller) or of the listed sizes along dim; views."""
    expect_tensor(tensor, "split", "tensor")
    if tensor.ndim == 0:
        raise ValueError("split: cannot split a 0-d tensor")
    dim = _wrap_dim(dim, tensor.ndim)
    size = tensor.shape[dim]
    if isinstance(split_size_or_sections, (tuple, list)):
        sizes = [_size_int(s, "split", "section size") for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != size:
            raise ValueError(f"split: sections {sizes} do not sum to dimension {dim} of size {size}")
        if not sizes:
            raise ValueError("split: expected at least one section")
    else:
        step = _size_int(split_size_or_sections, "split", "split_size")
        if step < 0 or (step == 0 and size != 0):
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, size - i) for i in range(0, size, step)] if size else [0]
    return _pieces(tensor, sizes, dim, False)


def chunk(input, chunks, dim=0):
    """At most `chunks` pieces of ceil(size/chunks) along dim (PyTorch's rule); views."""
    expect_tensor(input, "chunk")
    chunks = _size_int(chunks, "chunk", "chunks")
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    if input.ndim == 0:
        raise ValueError("chunk: cannot chunk a 0-d tensor")
    dim = _wrap_dim(dim, input.ndim)
    size = input.shape[dim]
    if size == 0:  # PyTorch returns `chunks` empty pieces
        if chunks > 1 << 20:
            raise ValueError(f"chunk: {chunks} chunks of an empty dim is too many")
        return _pieces(input, [0] * chunks, dim, False)
    return split(input, -(-size // chunks), dim)


def unbind(input, dim=0):
    """The slices along dim with the dim removed; views."""
    expect_tensor(input, "unbind")
    if input.ndim == 0:
        raise ValueError("unbind: cannot unbind a 0-d tensor")
    dim = _wrap_dim(dim, input.ndim)
    if input.shape[dim] == 0:
        return ()
    return _pieces(input, [1] * input.shape[dim], dim, True)


# ---- flip / repeat ----------------------------------------------------------------------------

def flip(input, dims):
    """A copy reversed along dims."""
    expect_tensor(input, "flip")
    dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
    dims = tuple(_wrap_dim(d, input.ndim) for d in dims)
    if len(set(dims)) != len(dims):
        raise ValueError(f"flip: repeated dim in {dims}")
    return _call("flip", (input,), dims=dims)


def repeat(input, *sizes):
    """Tile input sizes[i] times along dim i (leading sizes add dims): each repeated dim is an
    unsqueeze + expand view made contiguous by a reshape."""
    expect_tensor(input, "repeat")
    sizes = _shape_arg(sizes, "repeat")
    if len(sizes) < input.ndim:
        raise ValueError(f"repeat: {len(sizes)} sizes given for a {input.ndim}-d tensor")
    if any(s < 0 for s in sizes):
        raise ValueError(f"repeat: sizes must be non-negative, got {sizes}")
    x = reshape(input, (1,) * (len(sizes) - input.ndim) + input.shape)
    for d, r in enumerate(sizes):
        if r == 1:
            continue
        shape = x.shape
        x = expand(unsqueeze(x, d), shape[:d] + (r,) + shape[d:])
        x = reshape(x, shape[:d] + (r * shape[d],) + shape[d + 1:])
    if all(r == 1 for r in sizes):  # still a view of input: repeat always copies
        x = _call("flip", (x,), dims=())
    return x


for _name, _fn in dict(reshape=reshape, view=view, flatten=flatten, permute=permute, transpose=transpose,
                       t=t, contiguous=contiguous, expand=expand, expand_as=expand_as, broadcast_to=broadcast_to,
                       squeeze=squeeze, unsqueeze=unsqueeze, movedim=movedim, split=split, chunk=chunk,
                       unbind=unbind, narrow=narrow, select=select, flip=flip, repeat=repeat).items():
    register(_name, _fn)
