"""One helper proves an op against PyTorch and against finite differences.

check_op(vitc_fn, torch_fn, inputs) runs the same function in both frameworks on the same data:
forward outputs must agree, and the gradients of every float input for a random upstream gradient
must agree (torch.autograd is the reference). A float32 central-difference check of the vitc
gradient along a random direction catches a backward that is consistent with torch only by
accident of both being wrong. `noncontig=True` feeds transposed (strided) views instead.
"""
import numpy as np
import torch

import vitc

RNG = np.random.default_rng(0)


def rand(*shape, low=-1.0, high=1.0, rng=RNG):
    return rng.uniform(low, high, size=shape).astype(np.float32)


def _leaf_pair(arr, noncontig, requires_grad):
    """(vitc leaf, vitc input, torch leaf, torch input); the input is a strided view if asked."""
    if arr.dtype != np.float32:
        return None, vitc.from_numpy(np.ascontiguousarray(arr)), None, torch.from_numpy(np.ascontiguousarray(arr))
    if noncontig and arr.ndim >= 2:
        base = np.ascontiguousarray(np.swapaxes(arr, -1, -2))
        vl = vitc.from_numpy(base.copy())
        vl.requires_grad = requires_grad
        tl = torch.from_numpy(base.copy()).requires_grad_(requires_grad)
        vi, ti = vl.transpose(-1, -2), tl.transpose(-1, -2)
        assert not vi.is_contiguous() or 1 in arr.shape[-2:] or arr.size == 0  # empty: contiguous (as torch)
        return vl, vi, tl, ti
    vl = vitc.from_numpy(arr.copy())
    vl.requires_grad = requires_grad
    tl = torch.from_numpy(arr.copy()).requires_grad_(requires_grad)
    return vl, vl, tl, tl


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _np(t):
    if isinstance(t, torch.Tensor):
        return t.detach().numpy()
    return t.detach().numpy()


def assert_close(actual, expected, rtol, atol, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if actual.dtype == np.bool_ or expected.dtype == np.bool_ or actual.dtype.kind in "iu":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol,
                               err_msg=what, equal_nan=True)


def check_op(vfn, tfn, inputs, rtol=1e-5, atol=1e-6, grad_rtol=1e-4, grad_atol=1e-5, noncontig=False,
             grad=True, fd=True, fd_eps=1e-2, fd_rtol=2e-2, grad_inputs=None):
    """Compare vfn(*vitc inputs) with tfn(*torch inputs), forward and backward.

    inputs: NumPy arrays; float32 ones get gradients (unless grad_inputs lists the indices that do).
    """
    want = [a.dtype == np.float32 and grad and (grad_inputs is None or i in grad_inputs)
            for i, a in enumerate(inputs)]
    pairs = [_leaf_pair(a, noncontig, w) for a, w in zip(inputs, want)]
    vout = _as_tuple(vfn(*[p[1] for p in pairs]))
    tout = _as_tuple(tfn(*[p[3] for p in pairs]))
    assert len(vout) == len(tout), f"{len(vout)} outputs, torch gives {len(tout)}"
    for k, (v, t) in enumerate(zip(vout, tout)):
        assert_close(_np(v), _np(t), rtol, atol, f"forward output {k}")
    if not any(want):
        return vout
    # random upstream gradient for every float output that carries a graph
    ups = [(v, t, rand(*v.shape)) for v, t in zip(vout, tout) if v.dtype is vitc.float32 and v.requires_grad]
    assert ups, "no differentiable output"
    vloss = sum((v * vitc.from_numpy(w)).sum() for v, t, w in ups)
    tloss = sum((t * torch.from_numpy(w)).sum() for v, t, w in ups)
    vloss.backward()
    tloss.backward()
    for i, (p, w) in enumerate(zip(pairs, want)):
        if not w:
            continue
        vg, tg = p[0].grad, p[2].grad
        assert (vg is None) == (tg is None), f"input {i}: grad presence differs (vitc {vg is not None})"
        if tg is not None:
            assert_close(vg.numpy(), tg.numpy(), grad_rtol, grad_atol, f"gradient of input {i}")
    if fd:
        finite_difference(vfn, inputs, want, [w for _, _, w in ups], eps=fd_eps, rtol=fd_rtol)
    return vout


def finite_difference(vfn, inputs, want, upstream, eps=1e-2, rtol=2e-2):
    """Directional derivative of L = Σ out·w along a random direction d: (L(x+εd) − L(x−εd))/2ε
    against Σ grad·d. float32 forward passes, float64 sums."""
    rng = np.random.default_rng(1)

    def loss(arrs):
        with vitc.no_grad():
            outs = _as_tuple(vfn(*[vitc.from_numpy(np.array(a, order="C", copy=True)) for a in arrs]))
            outs = [o for o in outs if o.dtype is vitc.float32]
            return sum(float(np.sum(o.numpy().astype(np.float64) * w)) for o, w in zip(outs, upstream))

    leaves = [vitc.from_numpy(a.copy()) for a in inputs]
    for leaf, w in zip(leaves, want):
        if w:
            leaf.requires_grad = True
    outs = [o for o in _as_tuple(vfn(*leaves)) if o.dtype is vitc.float32]
    total = sum((o * vitc.from_numpy(w)).sum() for o, w in zip(outs, upstream))
    total.backward()
    dirs = [rng.standard_normal(a.shape).astype(np.float32) if w else np.zeros_like(a) for a, w in zip(inputs, want)]
    analytic = sum(float(np.sum(l.grad.numpy().astype(np.float64) * d)) for l, d, w in zip(leaves, dirs, want)
                   if w and l.grad is not None)
    plus = loss([a + eps * d if w else a for a, d, w in zip(inputs, dirs, want)])
    minus = loss([a - eps * d if w else a for a, d, w in zip(inputs, dirs, want)])
    numeric = (plus - minus) / (2 * eps)
    scale = max(1.0, abs(numeric), abs(analytic))
    assert abs(numeric - analytic) <= rtol * scale, f"finite difference {numeric} vs analytic {analytic}"


def check_allocation_failures(workload, attempts=80, min_failures=1):
    """Fail the n-th allocation of `workload()` for n = 0, 1, ... (SQLite's test_malloc idea): each
    run either completes or raises MemoryError, never crashes, and no bytes stay live afterwards.
    Stops early once a run completes (every allocation it needs has been failed once)."""
    import gc
    workload()  # warm the allocator cache and any lazily built state
    gc.collect()
    live = vitc._C.alloc_stats()["live"]
    workload()
    gc.collect()
    assert vitc._C.alloc_stats()["live"] == live, "a plain run leaks"
    failures = 0
    for n in range(attempts):
        vitc._C._alloc_fail_after(n)
        try:
            workload()
        except MemoryError:
            failures += 1
        else:
            break
        finally:
            vitc._C._alloc_fail_after(-1)
    gc.collect()
    assert failures >= min_failures, f"only {failures} injected failures surfaced"
    assert vitc._C.alloc_stats()["live"] == live, "a failed run leaked"


def at_thread_counts(run, counts=(1, 2)):
    """run() once at each vitc thread count in `counts` (the setting is restored after): its results,
    for tests that an op gives the same bits whatever the thread count."""
    prev = vitc.get_num_threads()
    try:
        out = []
        for n in counts:
            vitc.set_num_threads(n)
            out.append(run())
        return out
    finally:
        vitc.set_num_threads(prev)


def assert_same_at_1_and_2_threads(run):
    """run() returns a list of arrays: they must be bitwise equal at 1 and at 2 threads. Returns them
    (the 1-thread run's), for tests that go on to check the values themselves."""
    one, two = at_thread_counts(run)
    assert len(one) == len(two)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    return one
