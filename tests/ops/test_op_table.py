"""The op table's argument specs (csrc/ops/*.def ARGS, exported as vitc._C.op_args) against the C
dispatch checks and against every Python wrapper's `_call`, and the keyword packer's errors."""
import ast
import pathlib
import re

import pytest

import vitc
from vitc._tensor import _SIGNATURES, _call

VITC = pathlib.Path(vitc.__file__).parent

# `_call` sites whose op is not a string literal: (module, enclosing function (dotted when nested), op
# expression) -> the ops
# it runs. A new such site must be listed here (the walk below fails on an unknown one).
DYNAMIC_SITES = {
    ("_ops/activation.py", "_softmax", "op"): ("softmax", "log_softmax"),
    ("_ops/elementwise.py", "_unary.fn", "name"): ("neg", "exp", "log", "sqrt", "rsqrt", "abs"),
    ("_ops/elementwise.py", "_compare.fn", "name"): ("eq", "ne", "lt", "le", "gt", "ge"),
    ("_ops/norm.py", "_bn_call", "op"): ("batch_norm", "token_batch_norm"),
    ("_ops/reduce.py", "_var_like", "op"): ("var", "std"),
    ("_ops/reduce.py", "_extreme", "op"): ("max", "min"),
    ("_ops/reduce.py", "_extreme", "op + '_dim'"): ("max_dim", "min_dim"),
    ("_ops/reduce.py", "_arg", "op"): ("argmax", "argmin"),
}


def parse_spec(spec):
    return [tuple(entry.split(":")) for entry in spec.split()]


# ---- the table itself ----------------------------------------------------------------------------

def test_every_op_has_a_spec():
    assert set(vitc._C.op_args) == set(vitc._C.ops)
    assert len(vitc._C.ops) == len(set(vitc._C.ops.values()))
    for op, spec in vitc._C.op_args.items():
        entries = parse_spec(spec)
        assert entries and entries[0][0] in ("t", "t*"), f"{op}: the first argument must be a tensor ({spec!r})"
        names = [name for _, name in entries]
        assert len(names) == len(set(names)), f"{op}: repeated argument name in {spec!r}"
        for kind, name in entries:
            assert kind in ("t", "t?", "t*", "i", "i*", "f"), f"{op}: unknown kind in {spec!r}"
            assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), f"{op}: argument name {name!r}"


def test_variable_length_lists_come_last():
    for op, spec in vitc._C.op_args.items():
        for family in ("t", "i"):
            kinds = [kind for kind, _ in parse_spec(spec) if kind.startswith(family)]
            if family + "*" in kinds:
                assert kinds.index(family + "*") == len(kinds) - 1 and kinds.count(family + "*") == 1, \
                    f"{op}: a variable-length {family} list must be the last of its kind ({spec!r})"


def test_c_checks_the_declared_counts():
    """The dispatch table rejects a call short of the row's fixed ints or floats, naming both counts:
    the C side counts what the spec string says."""
    x = vitc.zeros(2)
    for op, spec in vitc._C.op_args.items():
        kinds = [kind for kind, _ in parse_spec(spec)]
        ni, nf = kinds.count("i"), kinds.count("f")
        for short_i, short_f in ((1, 0), (0, 1)):
            if (short_i and not ni) or (short_f and not nf):
                continue
            ints, floats = (0,) * (ni - short_i), (0.0,) * (nf - short_f)
            with pytest.raises(ValueError, match=rf"^{op}: expected {ni} integer and {nf} float arguments, "
                                                 rf"got {len(ints)} and {len(floats)}$"):
                vitc._C.call(vitc._C.ops[op], (x,), ints, floats)


# ---- the keyword packer -----------------------------------------------------------------------------

def test_packer_rejects_a_missing_argument():
    x = vitc.ones(2, 3)
    with pytest.raises(TypeError, match=r"^layer_norm: missing argument 'eps' \(it takes normalized_shape, eps\)$"):
        _call("layer_norm", (x, None, None), normalized_shape=(3,))
    with pytest.raises(TypeError, match=r"^softmax: missing argument 'dim'"):
        _call("softmax", (x,))


def test_packer_rejects_an_unknown_argument():
    x = vitc.ones(2, 3)
    with pytest.raises(TypeError, match=r"^softmax: unexpected argument 'axis' \(it takes dim\)$"):
        _call("softmax", (x,), dim=1, axis=1)
    with pytest.raises(TypeError, match=r"^softmax: missing argument 'dim'; unexpected argument 'dims'"):
        _call("softmax", (x,), dims=1)
    with pytest.raises(TypeError, match=r"^relu: unexpected argument 'inplace' \(it takes no arguments\)$"):
        _call("relu", (x,), inplace=0)


def test_packer_checks_the_number_of_tensors():
    x = vitc.ones(2, 3)
    with pytest.raises(TypeError, match=r"^linear: expected 3 tensor arguments \(x, weight, bias\), got 2$"):
        _call("linear", (x, x))
    with pytest.raises(TypeError, match=r"^relu: expected 1 tensor arguments \(x\), got 2$"):
        _call("relu", (x, x))
    assert _call("cat", (x,) * 5, dim=0, stack=0).shape == (10, 3)  # TENSORS: any number


def test_packer_packs_by_name_not_by_order():
    """Keyword order does not matter, and the values land in the slots the row names: swapping two
    ints of the same kind by name changes nothing, swapping their values does."""
    x = vitc.arange(12.0).reshape(3, 4)
    a = _call("index_select", (x, vitc.tensor([2, 0])), dim=1, ndims=1, wrap=0)
    b = _call("index_select", (x, vitc.tensor([2, 0])), wrap=0, ndims=1, dim=1)
    assert a.tolist() == b.tolist() == [[2.0, 0.0], [6.0, 4.0], [10.0, 8.0]]
    ln = _call("layer_norm", (x, None, None), eps=1e-5, normalized_shape=(4,))
    assert ln.shape == (3, 4)
    assert _SIGNATURES["layer_norm"].names() == ["normalized_shape", "eps"]


# ---- every wrapper against its row -----------------------------------------------------------------

def call_sites(source, module):
    """(op names, keyword names, tensor count or None, line) of each `_call(...)` in a module's source."""
    tree = ast.parse(source)
    sites = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef):
                visit(child, f"{func}.{child.name}" if func else child.name)
                continue
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id == "_call":
                sites.append((resolve_ops(child.args[0], module, func), child, func))
            visit(child, func)

    visit(tree, None)
    out = []
    for ops, call, func in sites:
        assert all(k.arg is not None for k in call.keywords), f"{module}:{call.lineno}: **kwargs hides the names"
        assert len(call.args) == 2, f"{module}:{call.lineno}: _call takes (op, tensors, **named arguments)"
        tens = call.args[1]
        count = len(tens.elts) if isinstance(tens, ast.Tuple) and not any(
            isinstance(e, ast.Starred) for e in tens.elts) else None
        out.append((ops, {k.arg for k in call.keywords}, count, f"{module}:{call.lineno}"))
    return out


DYNAMIC_SEEN = set()


def resolve_ops(node, module, func):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    key = (module, func, ast.unparse(node).replace('"', "'"))
    assert key in DYNAMIC_SITES, f"{key}: a _call with a computed op name; list its ops in DYNAMIC_SITES"
    DYNAMIC_SEEN.add(key)
    return DYNAMIC_SITES[key]


def check_site(ops, kwargs, count, where):
    """The mismatches of one call site with the rows of the ops it may run."""
    problems = []
    for op in ops:
        if op not in _SIGNATURES:
            problems.append(f"{where}: no op {op!r} in the table")
            continue
        sig = _SIGNATURES[op]
        declared = set(sig.names())
        if kwargs != declared:
            problems.append(f"{where}: {op} declares {sorted(declared)}, the call passes {sorted(kwargs)}")
        if count is not None and count != len(sig.tensors) and not (sig.variadic and count >= len(sig.tensors)):
            problems.append(f"{where}: {op} declares {len(sig.tensors)} tensors, the call passes {count}")
    return problems


def all_sites():
    sites = []
    for path in sorted(VITC.rglob("*.py")):
        source = path.read_text()
        if "_call(" in source:
            sites += call_sites(source, path.relative_to(VITC).as_posix())
    return sites


def test_every_wrapper_passes_what_its_row_declares():
    sites = all_sites()
    problems = [p for site in sites for p in check_site(*site)]
    assert not problems, "\n".join(problems)
    reached = {op for ops, *_ in sites for op in ops}
    assert reached == set(vitc._C.ops), f"ops no wrapper calls: {sorted(set(vitc._C.ops) - reached)}"
    assert DYNAMIC_SEEN == set(DYNAMIC_SITES), f"stale DYNAMIC_SITES entries: {set(DYNAMIC_SITES) - DYNAMIC_SEEN}"


@pytest.mark.parametrize("line, complaint", [
    ('_call("softmax", (x,), dims=1)', "softmax declares ['dim'], the call passes ['dims']"),
    ('_call("softmax", (x,))', "softmax declares ['dim'], the call passes []"),
    ('_call("layer_norm", (x, w, b), normalized_shape=s, eps=e, elementwise=1)', "the call passes ['elementwise'"),
    ('_call("linear", (x, w))', "linear declares 3 tensors, the call passes 2"),
])
def test_the_wrapper_walk_finds_a_wrong_call(line, complaint):
    """The walk above is not vacuous: a call passing a wrong, missing or extra name is reported."""
    sites = call_sites(f"def f(x, w, b, s, e):\n    return {line}\n", "example.py")
    problems = [p for site in sites for p in check_site(*site)]
    assert len(problems) == 1 and complaint in problems[0], problems
