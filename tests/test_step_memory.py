"""The step-memory switches (issue 26) and the saved-tensor breakdown (vitc.profiler.saved_tensors).

VITC_ATTN_RECOMPUTE=1 makes the packed attention ops recompute the softmax maps in backward instead
of keeping them, VITC_QKV_RECOMPUTE=1 makes qkv_attention recompute its qkv projection and attention
output: outputs and gradients must be bitwise those of the default, and the tape must hold fewer
bytes (deterministic allocator counts, no timing). VITC_FFN_RECOMPUTE=1 likewise for
linear_gelu_linear's pre-activation. VITC_LN_RECOMPUTE (on unless 0): an op that saves a LayerNorm's
output keeps the LayerNorm node instead and the engine rebuilds the output before that op's backward."""
import os

import numpy as np
import pytest

import vitc as v
from vitc import profiler


@pytest.fixture
def env_switch():
    """set an environment switch for one test, restoring it afterwards"""
    saved = {}

    def setter(name, value):
        saved.setdefault(name, os.environ.get(name))
        os.environ[name] = value
    yield setter
    for name, old in saved.items():
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _qkv_attention_step(B, T, H, Dh, dropout_p, need_weights=False, proj=True):
    """forward + backward of one qkv_attention node (through mean of squares); returns numpy arrays of
    the output, the maps if asked, and every gradient"""
    rng = np.random.default_rng(3)
    D = H * Dh
    mk = lambda *s, k=1.0: v.from_numpy((rng.standard_normal(s) * k).astype(np.float32)).requires_grad_()
    x, w, b, wo, bo = mk(B, T, D), mk(3 * D, D, k=0.3), mk(3 * D), mk(D, D, k=0.3), mk(D)
    v.manual_seed(7)
    res = v.qkv_attention(x, w, b, H, dropout_p=dropout_p, need_weights=need_weights,
                          proj_weight=wo if proj else None, proj_bias=bo if proj else None)
    out, maps = res if need_weights else (res, None)
    loss = (out * out).mean()
    if maps is not None:
        loss = loss + (maps * maps).sum()
    loss.backward()
    arrays = [out.detach().numpy()] + ([maps.detach().numpy()] if maps is not None else [])
    return arrays + [t.grad.numpy() for t in ((x, w, b, wo, bo) if proj else (x, w, b))]


# staged (B >= 4 x threads, small images) and per-head (B = 1) plans, with and without dropout
@pytest.mark.parametrize("B,T,H,Dh,p,weights,proj", [(8, 17, 3, 8, 0.0, False, True), (8, 17, 3, 8, 0.25, False, True),
                                                      (1, 33, 2, 16, 0.0, False, False), (1, 33, 2, 16, 0.3, True, True),
                                                      (16, 9, 4, 4, 0.0, True, False)])
@pytest.mark.parametrize("maps,qkv", [("1", "0"), ("0", "1"), ("1", "1"), ("2", "0")])
def test_attention_recompute_is_bitwise(env_switch, B, T, H, Dh, p, weights, proj, maps, qkv):
    env_switch("VITC_ATTN_RECOMPUTE", "0")
    env_switch("VITC_QKV_RECOMPUTE", "0")
    ref = _qkv_attention_step(B, T, H, Dh, p, weights, proj)
    env_switch("VITC_ATTN_RECOMPUTE", maps)
    env_switch("VITC_QKV_RECOMPUTE", qkv)
    got = _qkv_attention_step(B, T, H, Dh, p, weights, proj)
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        assert np.array_equal(a, b)


def test_qkv_recompute_without_bias_is_bitwise(env_switch):
    rng = np.random.default_rng(4)
    x0, w0 = rng.standard_normal((8, 13, 24)).astype(np.float32), rng.standard_normal((72, 24)).astype(np.float32)
    res = []
    for flag in ("0", "1"):
        env_switch("VITC_QKV_RECOMPUTE", flag)
        x, w = v.from_numpy(x0).requires_grad_(), v.from_numpy(w0).requires_grad_()
        out = v.qkv_attention(x, w, None, 3)
        (out * out).sum().backward()
        res.append([out.detach().numpy(), x.grad.numpy(), w.grad.numpy()])
    for a, b in zip(*res):
        assert np.array_equal(a, b)


def test_packed_attention_recompute_is_bitwise(env_switch):
    rng = np.random.default_rng(5)
    qkv0 = rng.standard_normal((6, 11, 3 * 2 * 8)).astype(np.float32)
    grads = []
    for flag in ("0", "1"):
        env_switch("VITC_ATTN_RECOMPUTE", flag)
        qkv = v.from_numpy(qkv0).requires_grad_()
        v.manual_seed(2)
        out = v.multi_head_attention_packed(qkv, 2, dropout_p=0.1)
        (out * out).sum().backward()
        grads.append((out.detach().numpy(), qkv.grad.numpy()))
    assert np.array_equal(grads[0][0], grads[1][0]) and np.array_equal(grads[0][1], grads[1][1])


@pytest.mark.parametrize("ln_rebuilt", [False, True])
def test_saved_tensors_hand_count(env_switch, ln_rebuilt):
    """layer_norm then linear on a non-leaf input: counted by hand from the shapes"""
    env_switch("VITC_LN_RECOMPUTE", "1" if ln_rebuilt else "0")
    M, D, O = 6, 16, 5
    a = v.randn(M, D).requires_grad_()
    x = a * 2.0
    ln_w, ln_b = v.ones(D).requires_grad_(), v.zeros(D).requires_grad_()
    w = v.randn(O, D).requires_grad_()
    y = v.layer_norm(x, (D,), ln_w, ln_b)
    out = v.linear(y, w)
    rows = {r.op: r for r in profiler.saved_tensors(out.sum())}
    # layer_norm: its input x (6·16 floats = 384 bytes, a whole 64-byte class), mean and rstd (6
    # floats = 24 bytes, each in a 64-byte block); its weight is a parameter
    ln = rows["layer_norm"]
    # (and its bias, a parameter too, so the output can be rebuilt)
    ln = rows["layer_norm"]
    assert ln.nodes == 1 and ln.tensors == 5 and ln.rebuilt == 0
    assert ln.bytes == 384 + 64 + 64
    assert ln.param_bytes == 4 * D * 2
    # linear: its input y (M·D floats, the layer norm's output; with the switch on, not kept but
    # rebuilt from the layer norm's node) and its weight (a parameter)
    lin = rows["linear"]
    assert lin.bytes == (0 if ln_rebuilt else 384) and lin.rebuilt == (1 if ln_rebuilt else 0)
    assert lin.param_bytes == 4 * O * D and lin.shared_bytes == 0
    assert "layer_norm" in profiler.saved_tensors_table(list(rows.values()))


def test_saved_tensors_counts_a_shared_storage_once():
    a = v.randn(8, 16).requires_grad_()
    x = a * 2.0
    w1, w2 = v.randn(4, 16).requires_grad_(), v.randn(3, 16).requires_grad_()
    out = v.linear(x, w1).sum() + v.linear(x, w2).sum()  # both linears save x
    rows = {r.op: r for r in profiler.saved_tensors(out)}
    assert rows["linear"].nodes == 2
    assert rows["linear"].bytes == 8 * 16 * 4  # 512 bytes: exactly one block
    assert rows["linear"].param_bytes == 4 * (4 + 3) * 16


def test_saved_tensors_rejects_non_tensor():
    with pytest.raises(TypeError, match="saved_tensors"):
        profiler.saved_tensors(np.zeros(3))


def _attention_peak(B, T, H, Dh, layers):
    """allocator peak (bytes above the start) of `layers` chained qkv_attention nodes, forward +
    backward, and the bytes their tape keeps: one layer recomputes what it dropped at the very
    moment the peak is reached, a stack of them is what the switches are for"""
    rng = np.random.default_rng(0)
    x = v.from_numpy(rng.standard_normal((B, T, H * Dh)).astype(np.float32)).requires_grad_()
    w = v.from_numpy(rng.standard_normal((3 * H * Dh, H * Dh)).astype(np.float32) * 0.2).requires_grad_()
    wo = v.from_numpy(rng.standard_normal((H * Dh, H * Dh)).astype(np.float32) * 0.2).requires_grad_()
    base = v.memory_stats()["live_bytes"]
    v.reset_peak_memory_stats()
    out = x
    for _ in range(layers):
        out = v.qkv_attention(out, w, None, H, proj_weight=wo)
    loss = out.sum()
    saved = sum(r.bytes for r in profiler.saved_tensors(loss))
    loss.backward()
    return v.memory_stats()["peak_bytes"] - base, saved


@pytest.mark.parametrize("switch,what", [("VITC_ATTN_RECOMPUTE", "maps"), ("VITC_QKV_RECOMPUTE", "qkv")])
def test_recompute_lowers_saved_and_peak_bytes(env_switch, switch, what):
    B, T, H, Dh = 8, 33, 3, 16
    env_switch("VITC_ATTN_RECOMPUTE", "0")
    env_switch("VITC_QKV_RECOMPUTE", "0")
    peak_off, saved_off = _attention_peak(B, T, H, Dh, layers=4)
    env_switch(switch, "1")
    peak_on, saved_on = _attention_peak(B, T, H, Dh, layers=4)
    bs = v._C._block_size
    # those tensors' blocks are no longer on the tape: the maps (each row's softmax max and 1/sum
    # are kept instead), or qkv and the attention output
    dropped = (bs(B * H * T * T * 4) - bs(B * H * T * 2 * 4) if what == "maps"
               else bs(B * T * 3 * H * Dh * 4) + bs(B * T * H * Dh * 4))
    assert saved_off - saved_on == 4 * dropped
    assert peak_on < peak_off


@pytest.mark.parametrize("B,T", [(8, 17), (1, 33)])  # staged and per-head plans
def test_qkv_recompute_with_only_the_projection_trained(env_switch, B, T):
    """x, W and b frozen: the backward still recomputes the attention output for W_o's gradient"""
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((B, T, 24), (72, 24), (72,), (10, 24), (10,))]
    res = []
    for flag in ("0", "1"):
        env_switch("VITC_QKV_RECOMPUTE", flag)
        env_switch("VITC_ATTN_RECOMPUTE", flag)
        x, w, b, wo, bo = [v.from_numpy(a) for a in arrays]
        wo.requires_grad_()
        bo.requires_grad_()
        out = v.qkv_attention(x, w, b, 3, proj_weight=wo, proj_bias=bo)
        (out * out).sum().backward()
        res.append([out.detach().numpy(), wo.grad.numpy(), bo.grad.numpy()])
    for a, b in zip(*res):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("mask_kind,causal,p", [(None, False, 0.0), ("bool", False, 0.2), ("float", False, 0.0),
                                                (None, True, 0.1)])
def test_sdpa_recompute_is_bitwise(env_switch, mask_kind, causal, p):
    rng = np.random.default_rng(8)
    q0, k0, v0 = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 9, 8), (2, 3, 11, 8), (2, 3, 11, 5)))
    mask0 = None
    if mask_kind == "bool":
        mask0 = rng.uniform(size=(9, 11)) < 0.7
        mask0[:, 0] = True
    elif mask_kind == "float":
        mask0 = rng.standard_normal((3, 9, 11)).astype(np.float32)
    res = []
    for flag in ("0", "1"):
        env_switch("VITC_ATTN_RECOMPUTE", flag)
        q, k, val = (v.from_numpy(a).requires_grad_() for a in (q0, k0, v0))
        mask = None if mask0 is None else v.from_numpy(mask0)
        v.manual_seed(3)
        out = v.scaled_dot_product_attention(q, k, val, attn_mask=mask, dropout_p=p, is_causal=causal)
        (out * out).sum().backward()
        res.append([out.detach().numpy(), q.grad.numpy(), k.grad.numpy(), val.grad.numpy()])
    for a, b in zip(*res):
        assert np.array_equal(a, b)


# the fused row-block plan (own-kernel sizes) and the unfused one (a 1-d input), with and without b1
@pytest.mark.parametrize("shape,bias,approx", [((4, 50, 24), True, "none"), ((3, 7, 24), False, "tanh"),
                                               ((24,), True, "none"), ((300, 64), True, "tanh")])
def test_ffn_recompute_is_bitwise(env_switch, shape, bias, approx):
    rng = np.random.default_rng(9)
    D, Hd, Do = shape[-1], 96, 20
    arrays = [rng.standard_normal(s).astype(np.float32) * k for s, k in
              ((shape, 1.0), ((Hd, D), 0.2), ((Hd,), 1.0), ((Do, Hd), 0.2), ((Do,), 1.0))]
    res = []
    for flag in ("0", "1"):
        env_switch("VITC_FFN_RECOMPUTE", flag)
        x, w1, b1, w2, b2 = [v.from_numpy(a).requires_grad_() for a in arrays]
        y = v.linear_gelu_linear(x, w1, b1 if bias else None, w2, b2, approximate=approx)
        (y * y).sum().backward()
        res.append([y.detach().numpy()] + [t.grad.numpy() for t in ((x, w1, b1, w2, b2) if bias else (x, w1, w2, b2))])
    for a, b in zip(*res):
        assert np.array_equal(a, b)


def test_ffn_recompute_lowers_saved_bytes(env_switch):
    rng = np.random.default_rng(10)
    M, D, Hd = 200, 32, 128
    x = v.from_numpy(rng.standard_normal((M, D)).astype(np.float32)).requires_grad_()
    w1, w2 = v.randn(Hd, D).requires_grad_(), v.randn(D, Hd).requires_grad_()
    saved = {}
    for flag in ("0", "1"):
        env_switch("VITC_FFN_RECOMPUTE", flag)
        y = v.linear_gelu_linear(x * 1.0, w1, None, w2, None)
        saved[flag] = {r.op: r.bytes for r in profiler.saved_tensors(y.sum())}["linear_gelu_linear"]
    assert saved["0"] - saved["1"] == v._C._block_size(4 * M * Hd)  # h is no longer on the tape


def test_python_switches_set_the_environment_and_restore_it(env_switch):
    for name in ("VITC_ATTN_RECOMPUTE", "VITC_QKV_RECOMPUTE", "VITC_FFN_RECOMPUTE", "VITC_LN_RECOMPUTE"):
        env_switch(name, "0")
    B, T, H, Dh = 8, 33, 3, 16
    _, saved_off = _attention_peak(B, T, H, Dh, layers=2)
    with v.recompute(attention_maps=True, qkv=True):
        assert v.get_recompute() == {"attention_maps": True, "qkv": True, "ffn": False, "layer_norm": False}
        _, saved_on = _attention_peak(B, T, H, Dh, layers=2)
    assert v.get_recompute() == {"attention_maps": False, "qkv": False, "ffn": False, "layer_norm": False}
    bs = v._C._block_size
    maps_for_stats = bs(B * H * T * T * 4) - bs(B * H * T * 2 * 4)  # the softmax row statistics stay
    assert saved_off - saved_on == 2 * (maps_for_stats + bs(B * T * 3 * H * Dh * 4) + bs(B * T * H * Dh * 4))
    before = v.set_recompute(ffn=True)
    assert before["ffn"] is False and os.environ["VITC_FFN_RECOMPUTE"] == "1"
    with pytest.raises(TypeError, match="attention_maps must be True, False or None"):
        v.set_recompute(attention_maps="yes")


@pytest.mark.parametrize("T,Dh,dropped", [(33, 16, True), (31, 16, False), (17, 64, False)])
def test_attention_maps_auto_drops_maps_at_least_as_large_as_q_and_k(env_switch, T, Dh, dropped):
    """unset VITC_ATTN_RECOMPUTE: the maps go where T >= 2·Dh (DeiT-Tiny, LV-ViT), stay below it
    (the seed ViT's 17 tokens of 64); forcing it on or off still wins"""
    B, H = 4, 2
    env_switch("VITC_QKV_RECOMPUTE", "0")
    saved = {}
    for flag in ("0", "", "1"):
        env_switch("VITC_ATTN_RECOMPUTE", flag)
        saved[flag] = _attention_peak(B, T, H, Dh, layers=1)[1]
    assert saved["0"] > saved["1"]
    assert saved[""] == (saved["1"] if dropped else saved["0"])


def test_attention_maps_auto_in_python(env_switch):
    env_switch("VITC_ATTN_RECOMPUTE", "")
    assert v.get_recompute()["attention_maps"] == "auto"
    with v.recompute(attention_maps=False):
        assert v.get_recompute()["attention_maps"] is False
    assert v.get_recompute()["attention_maps"] == "auto" and "VITC_ATTN_RECOMPUTE" not in os.environ
    before = v.set_recompute(attention_maps=True)
    assert before["attention_maps"] == "auto" and os.environ["VITC_ATTN_RECOMPUTE"] == "1"
    v.set_recompute(attention_maps="auto")
    assert "VITC_ATTN_RECOMPUTE" not in os.environ
    with pytest.raises(TypeError, match="attention_maps must be True, False or None, or 'auto'"):
        v.set_recompute(attention_maps="on")


def test_attention_recompute_2_also_drops_the_attention_output(env_switch):
    """VITC_ATTN_RECOMPUTE=2: qkv_attention keeps neither the maps nor the attention output before
    its projection (W stands in its slot); the backward rebuilds both"""
    B, T, H, Dh = 8, 33, 3, 16
    env_switch("VITC_QKV_RECOMPUTE", "0")
    env_switch("VITC_ATTN_RECOMPUTE", "1")
    peak1, saved1 = _attention_peak(B, T, H, Dh, layers=4)
    env_switch("VITC_ATTN_RECOMPUTE", "2")
    peak2, saved2 = _attention_peak(B, T, H, Dh, layers=4)
    assert saved1 - saved2 == 4 * v._C._block_size(B * T * H * Dh * 4)
    assert peak2 < peak1


# ---- LayerNorm outputs rebuilt instead of saved (VITC_LN_RECOMPUTE) --------------------------------

def _block_step(seed=0, B=4, T=9, D=32):
    """two pre-norm ViT blocks (LayerNorm → attention, LayerNorm → MLP, both save their norm's
    output): output, input gradient, every parameter gradient, and the tape's saved bytes"""
    v.manual_seed(seed)
    net = v.nn.Transformer(D, 2, heads=4, dim_head=8, mlp_dim=48)
    x = v.from_numpy(np.random.default_rng(seed).standard_normal((B, T, D)).astype(np.float32)).requires_grad_()
    out = net(x * 1.0)
    loss = (out * out).sum()
    saved = sum(r.bytes for r in profiler.saved_tensors(loss))
    rebuilt = sum(r.rebuilt for r in profiler.saved_tensors(loss))
    loss.backward()
    return [out.detach().numpy(), x.grad.numpy()] + [p.grad.numpy() for p in net.parameters()], saved, rebuilt


def test_layer_norm_rebuilt_is_bitwise_and_saves_two_activations_per_block(env_switch):
    B, T, D = 4, 9, 32
    env_switch("VITC_LN_RECOMPUTE", "0")
    kept, saved_kept, rebuilt_kept = _block_step(B=B, T=T, D=D)
    env_switch("VITC_LN_RECOMPUTE", "1")
    got, saved_rebuilt, rebuilt = _block_step(B=B, T=T, D=D)
    assert len(kept) == len(got)
    for a, b in zip(kept, got):
        assert np.array_equal(a, b)
    # 2 blocks × (attention input, MLP input), and the final norm's output, which `out * out` saves
    # twice (one storage)
    assert rebuilt_kept == 0 and rebuilt == 4 + 2
    assert saved_kept - saved_rebuilt == 5 * v._C._block_size(B * T * D * 4)


def test_layer_norm_rebuilt_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x0, w0, g0, b0 = (rng.standard_normal(s).astype(np.float32) for s in ((5, 7, 12), (6, 12), (12,), (12,)))
    assert v.get_recompute()["layer_norm"] is True
    x, w, g, b = (v.from_numpy(a).requires_grad_() for a in (x0, w0, g0, b0))
    y = v.linear(v.layer_norm(x * 2.0, (12,), g, b), w)
    (y * y).sum().backward()
    tx, tw, tg, tb = (torch.from_numpy(a).requires_grad_() for a in (x0, w0, g0, b0))
    ty = torch.nn.functional.linear(torch.nn.functional.layer_norm(tx * 2.0, (12,), tg, tb), tw)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    for a, ta in ((x, tx), (w, tw), (g, tg), (b, tb)):
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_layer_norm_rebuilt_without_affine_and_weight_only():
    """no weight and bias: rebuilt; a weight without bias: rebuilt; a bias without weight is kept"""
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((3, 8)).astype(np.float32)
    w = v.from_numpy(rng.standard_normal((4, 8)).astype(np.float32)).requires_grad_()
    for affine, rebuilt in (((None, None), 1), ((v.ones(8), None), 1), ((None, v.zeros(8)), 0)):
        x = v.from_numpy(x0).requires_grad_()
        loss = v.linear(v.layer_norm(x, (8,), *affine), w).sum()
        assert sum(r.rebuilt for r in profiler.saved_tensors(loss)) == rebuilt
        loss.backward()
        ref = v.from_numpy(x0).requires_grad_()
        with v.recompute(attention_maps=False, layer_norm=False):
            v.linear(v.layer_norm(ref, (8,), *affine), w).sum().backward()
        assert np.array_equal(x.grad.numpy(), ref.grad.numpy())


def test_layer_norm_rebuilt_after_its_node_was_freed_raises():
    """two losses share a LayerNorm output; the first backward frees the norm's saved input, so the
    second cannot rebuild it (PyTorch fails there too, at the norm's node)"""
    x = v.randn(4, 6).requires_grad_()
    w1, w2 = v.randn(3, 6).requires_grad_(), v.randn(2, 6).requires_grad_()
    y = v.layer_norm(x * 1.0, (6,), v.ones(6).requires_grad_(), v.zeros(6))
    l1, l2 = v.linear(y, w1).sum(), v.linear(y, w2).sum()
    l1.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        l2.backward()


def test_layer_norm_rebuilt_twice_with_retain_graph():
    x = v.randn(4, 6).requires_grad_()
    w = v.randn(3, 6).requires_grad_()
    loss = v.linear(v.layer_norm(x * 1.0, (6,), v.ones(6), v.zeros(6)), w).pow(2).sum()
    loss.backward(retain_graph=True)
    first = w.grad.numpy().copy()
    loss.backward()
    np.testing.assert_array_equal(w.grad.numpy(), 2 * first)


def test_layer_norm_input_changed_in_place_before_a_rebuild_raises():
    x = v.randn(4, 6).requires_grad_()
    h = x * 1.0
    w = v.randn(3, 6).requires_grad_()
    loss = v.linear(v.layer_norm(h, (6,), v.ones(6).requires_grad_(), v.zeros(6)), w).sum()
    with v.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_layer_norm_output_changed_in_place_after_save_still_gives_the_recorded_gradient():
    """unlike PyTorch (which raises: the saved output was rewritten), the rebuilt output is the one the
    consumer's forward used, so the gradient is that of the graph as recorded; with the output kept
    (VITC_LN_RECOMPUTE=0) the version check raises as in PyTorch"""
    rng = np.random.default_rng(7)
    x0, w0 = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((3, 6)).astype(np.float32)

    def run(change):
        x, w = v.from_numpy(x0).requires_grad_(), v.from_numpy(w0).requires_grad_()
        y = v.layer_norm(x * 1.0, (6,), v.ones(6), v.zeros(6))
        loss = v.linear(y, w).pow(2).sum()
        if change:
            with v.no_grad():
                y.add_(1.0)
        loss.backward()
        return w.grad.numpy(), x.grad.numpy()
    for a, b in zip(run(False), run(True)):
        assert np.array_equal(a, b)
    with v.recompute(attention_maps=False, layer_norm=False):
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            run(True)
