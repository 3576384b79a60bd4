"""The layers of csrc/ point down (docs/ARCHITECTURE.md):

    core      uses only core
    autograd  uses core and autograd
    kernels   uses core and kernels
    ops       use core, autograd, kernels and ops; an op family never uses another family
    python    uses everything

Read from the sources, no build needed. Two checks:
  * includes: every `#include "..."` of a csrc file resolves to a file in a layer it may use; an op
    family file may include the shared op files (ops.h, ops_util.h, the .def rows through ops.def)
    and its own family's files, not another family's;
  * names: every top-level function or variable a csrc .c file defines (and every static inline
    function a header defines) belongs to its file's layer (or family); no file may name one that
    belongs to a layer or family it may not use (comments and strings are stripped first).
A family is csrc/ops/<f>.def with csrc/ops/<f>.c, csrc/ops/<f>.h and anything under csrc/ops/<f>/;
the other files of csrc/ops are shared by all families and may not use any family.
"""
import os
import re

import pytest

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
MAY_USE = {
    "core": {"core"},
    "autograd": {"core", "autograd"},
    "kernels": {"core", "kernels"},
    "ops": {"core", "autograd", "kernels", "ops"},
    "python": {"core", "autograd", "kernels", "ops", "python"},
}


def source_files(root):
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            if n.endswith((".c", ".h", ".def")):
                yield os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/")


def families(root):
    """csrc/ops/<f>.def, or a folder csrc/ops/<f>/ holding a .def, names family f"""
    ops = os.path.join(root, "ops")
    fams = {n[:-4] for n in os.listdir(ops) if n.endswith(".def") and n != "ops.def"}
    for n in os.listdir(ops):
        sub = os.path.join(ops, n)
        if os.path.isdir(sub) and any(f.endswith(".def") for f in os.listdir(sub)):
            fams.add(n)
    return fams


def owner(rel, fams):
    """(layer, family or None) of a path relative to csrc/; files of csrc/ops outside every family
    (ops.h, ops_util.*, ops_table.c, ...) are the shared op files, family None"""
    parts = rel.split("/")
    layer = parts[0]
    if layer not in MAY_USE:
        raise AssertionError(f"csrc/{rel}: not in a known layer (core, autograd, kernels, ops, python)")
    if layer != "ops":
        return layer, None
    name = parts[1] if len(parts) > 2 else parts[1].rsplit(".", 1)[0]  # folder, or file stem
    return layer, (name if name in fams and name != "ops" else None)


def allowed(src, dst):
    """may code owned by src (layer, family) use something owned by dst?"""
    (sl, sf), (dl, df) = src, dst
    if dl not in MAY_USE[sl]:
        return False
    if sl == "ops" and dl == "ops" and df is not None:
        return sf == df  # a family's own files only; shared op files never use a family
    return True


def strip_comments_and_strings(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group().count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)
    return re.sub(r"'(?:\\.|[^'\\\n])'", "''", text)


def includes(root, rel):
    """resolved csrc-relative paths of the quoted includes of one file"""
    out = []
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        for line in f:
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if m:
                target = os.path.normpath(os.path.join(os.path.dirname(rel), m.group(1))).replace(os.sep, "/")
                out.append((m.group(1), target))
    return out


def after_parens(text, start):
    """index just past the parenthesis group opening at text[start]"""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return len(text)


def definitions(code, header):
    """names a file defines at top level: functions with a body (in headers: static inline ones)
    and global variables of .c files"""
    names = set()
    for m in re.finditer(r"^([A-Za-z_][\w \t\*]*?)\b([A-Za-z_]\w*)\s*\(", code, flags=re.M):
        decl, name = m.group(1), m.group(2)
        if re.match(r"\s*(return|typedef|extern|else|if|for|while|switch|do|case)\b", decl) or name in ("if", "while", "for"):
            continue
        end = after_parens(code, m.end() - 1)
        body = code[end:end + 200].lstrip()
        if not body.startswith("{"):
            continue
        is_static = re.search(r"\bstatic\b", decl)
        if header and not is_static:
            continue
        if not header and is_static:
            continue
        names.add(name)
    if not header:
        for m in re.finditer(r"^(?!static|extern|typedef|#)[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*(\[[^\]]*\])?\s*[=;]",
                             code, flags=re.M):
            if not re.match(r"\s*(return|else|case|goto|break|continue)\b", m.group(0)):
                names.add(m.group(1))
    return names


def scan(root):
    """(includes violations, name violations) of the tree under root"""
    fams = families(root)
    files = list(source_files(root))
    own = {rel: owner(rel, fams) for rel in files}
    bad_includes, bad_names = [], []
    for rel in files:
        for written, target in includes(root, rel):
            if target not in own:
                bad_includes.append(f'csrc/{rel}: #include "{written}" is not a csrc file')
            elif target.endswith(".def") and own[rel] == ("ops", None):
                continue  # the shared op files expand the table's rows (ops.def includes each family's)
            elif not allowed(own[rel], own[target]):
                bad_includes.append(f'csrc/{rel}: #include "{written}" reaches into {"/".join(filter(None, own[target]))}')
    code = {}
    for rel in files:
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            code[rel] = strip_comments_and_strings(f.read())
    defined_by = {}
    for rel in files:
        if rel.endswith(".def"):
            continue
        for name in definitions(code[rel], rel.endswith(".h")):
            defined_by.setdefault(name, set()).add(own[rel])
    for rel in files:
        if rel.endswith(".def"):
            continue
        used = set(re.findall(r"\b[A-Za-z_]\w*\b", code[rel]))
        for name in sorted(used & defined_by.keys()):
            owners = defined_by[name]
            if own[rel] in owners:
                continue  # defined here (or the same layer/family): static twins elsewhere do not matter
            for o in sorted(owners, key=str):
                if not allowed(own[rel], o):
                    bad_names.append(f"csrc/{rel}: uses {name}, defined in {'/'.join(filter(None, o))}")
    return bad_includes, bad_names


def test_includes_point_down():
    bad, _ = scan(CSRC)
    assert not bad, "includes that break the layering:\n" + "\n".join(bad)


def test_no_call_up_or_across_families():
    _, bad = scan(CSRC)
    assert not bad, "names used across the layering:\n" + "\n".join(bad)


def test_scan_sees_the_layers():
    """the scan finds what it should: kernels and families defined where expected"""
    fams = families(CSRC)
    assert {"activation", "elementwise", "reduce", "shape", "blas"} <= fams
    files = list(source_files(CSRC))
    seen = {}
    for rel in files:
        if rel.endswith(".c"):
            with open(os.path.join(CSRC, rel), encoding="utf-8") as f:
                for name in definitions(strip_comments_and_strings(f.read()), False):
                    seen[name] = rel
    assert seen["vt_k_sum_to"].startswith("kernels/")
    assert seen["vt_k_gemm"].startswith("kernels/")
    assert seen["vt_sum_forward"] == "ops/reduce.c"
    assert seen["vt_tensor_decref"] == "core/tensor.c"
    assert seen["vt_backward"] == "autograd/engine.c"


def _copy_tree(tmp_path):
    import shutil
    dst = tmp_path / "csrc"
    shutil.copytree(CSRC, dst)
    return str(dst)


def _edit(path, old, new):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert old in text
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))


@pytest.mark.parametrize("where, line", [
    ("core/tensor.c", '#include "../autograd/node.h"\n'),   # core reaching up
    ("kernels/view.c", '#include "../ops/ops.h"\n'),          # kernels reaching into ops
    ("ops/shape/views.c", '#include "reduce.h"\n'),          # doesn't resolve: not a csrc file
    ("ops/ffn.c", '#include "attention.h"\n'),               # another family's header
])
def test_a_broken_include_is_caught(tmp_path, where, line):
    root = _copy_tree(tmp_path)
    path = os.path.join(root, where)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(line + text)
    bad, _ = scan(root)
    assert any(b.startswith(f"csrc/{where}:") for b in bad), bad


def test_a_call_across_families_is_caught(tmp_path):
    root = _copy_tree(tmp_path)
    # elementwise calling the reduce family's sum forward, and core calling autograd
    _edit(os.path.join(root, "ops/elementwise.c"), "#include \"ops_util.h\"\n",
          "#include \"ops_util.h\"\nint vt_sum_forward(vt_ctx *c);\nint use_it(vt_ctx *c) { return vt_sum_forward(c); }\n")
    _edit(os.path.join(root, "core/tensor.c"), "#include \"iter.h\"\n",
          "#include \"iter.h\"\nvoid vt_node_decref(void *n);\nvoid drop(void *n) { vt_node_decref(n); }\n")
    _, bad = scan(root)
    assert any(b.startswith("csrc/ops/elementwise.c: uses vt_sum_forward") for b in bad), bad
    assert any(b.startswith("csrc/core/tensor.c: uses vt_node_decref") for b in bad), bad
