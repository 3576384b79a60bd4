"""Local timm checkpoints into vitc (create_model(..., pretrained_file=)): .safetensors, .pth and .npz;
position-embedding resampling equal to timm's resample_abs_pos_embed, head replacement, in_chans
adaptation, each compared with timm loading the same local file; a short fine-tune. Nothing is
downloaded: every checkpoint is a randomly initialised timm model saved to tmp_path."""
import os
import pickle

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed as timm_resample
from timm.models.vision_transformer import _load_weights as timm_load_npz

import vitc
from vitc import nn, optim
from vitc.models import create_model, resample_abs_pos_embed, to_timm_state_dict

from timm_helpers import assert_same_outputs  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: timm below only ever reads local files


@pytest.mark.parametrize("prefix", [1, 2])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("old,new", [(14, (4, 4)), (4, (9, 9)), (7, (5, 3)), (3, (3, 3))])
def test_resample_equals_timms(prefix, interpolation, antialias, old, new):
    pe = np.random.default_rng(old).normal(size=(1, prefix + old * old, 8)).astype(np.float32)
    want = timm_resample(torch.from_numpy(pe), list(new), num_prefix_tokens=prefix, interpolation=interpolation,
                         antialias=antialias).numpy()
    got = resample_abs_pos_embed(pe, new, prefix, interpolation=interpolation, antialias=antialias)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _timm_file(tmp_path, name="deit_tiny_patch16_224", seed=0, **kw):
    torch.manual_seed(seed)
    src = timm.create_model(name, pretrained=False, **kw)
    path = tmp_path / f"{name}.safetensors"
    save_file(src.state_dict(), str(path))
    return src.state_dict(), str(path)


def _timm_from_file(name, path, **kw):
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **kw).eval()


def test_224px_checkpoint_into_a_64px_10_class_model_then_fine_tune(tmp_path):
    sd, path = _timm_file(tmp_path, depth=4)  # timm's DeiT-Ti at 224 px, 4 of its 12 blocks (suite time)
    vitc.manual_seed(3)
    vm = create_model("deit_tiny_patch16_224", pretrained=True, pretrained_file=path, img_size=64, num_classes=10,
                      depth=4)
    # the position embedding is timm's own resampling of the checkpoint's (bicubic, antialiased)
    want_pe = timm_resample(sd["pos_embed"], [4, 4], num_prefix_tokens=1).numpy()
    np.testing.assert_allclose(vm.pos_embedding.detach().numpy(), want_pe, rtol=1e-5, atol=1e-6)
    # every other weight is the checkpoint's; the head is the fresh model's own (seeded alike)
    got = to_timm_state_dict(vm)
    for k in ("blocks.3.mlp.fc2.weight", "blocks.0.attn.qkv.bias", "cls_token", "norm.weight",
              "patch_embed.proj.weight"):
        np.testing.assert_array_equal(got[k], sd[k].numpy())
    vitc.manual_seed(3)
    fresh = create_model("deit_tiny_patch16_224", img_size=64, num_classes=10, depth=4)
    np.testing.assert_array_equal(vm.mlp_head.weight.detach().numpy(), fresh.mlp_head.weight.detach().numpy())
    assert vm.mlp_head.weight.shape == (10, 192)
    # timm loading the same local file into the same 64-px model computes the same features
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    tm = _timm_from_file("deit_tiny_patch16_224", path, img_size=64, num_classes=10, depth=4)
    assert_same_outputs(tm, vm, x, features=True)
    # and it fine-tunes: a few AdamW steps on one batch lower the loss
    rng = np.random.default_rng(1)
    xb = vitc.from_numpy(rng.normal(size=(8, 3, 64, 64)).astype(np.float32))
    yb = vitc.from_numpy(rng.integers(0, 10, 8).astype(np.int64))
    vm.train()
    opt, loss_fn, losses = optim.AdamW(vm.parameters(), lr=1e-3), nn.CrossEntropyLoss(), []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn(vm(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_in_chans_and_distilled_checkpoint_match_timms_loading(tmp_path):
    _, path = _timm_file(tmp_path, "deit_tiny_distilled_patch16_224", depth=2)
    kw = dict(img_size=32, num_classes=5, in_chans=1, depth=2)
    vm = create_model("deit_tiny_distilled_patch16_224", pretrained_file=path, **kw)
    tm = _timm_from_file("deit_tiny_distilled_patch16_224", path, **kw)
    np.testing.assert_allclose(vm.pos_embedding.detach().numpy(), tm.pos_embed.detach().numpy(), rtol=1e-5, atol=1e-6)
    x = np.random.default_rng(2).normal(size=(2, 1, 32, 32)).astype(np.float32)
    assert_same_outputs(tm, vm, x, features=True)


def test_pth_checkpoint_loads_like_safetensors(tmp_path):
    sd, st_path = _timm_file(tmp_path, "vit_tiny_patch16_224", depth=2)
    pth = tmp_path / "ckpt.pth"
    torch.save({"model": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, pth)  # DeiT's + DDP's wrapping
    a = create_model("vit_tiny_patch16_224", pretrained_file=st_path, depth=2, img_size=48, num_classes=1000)
    b = create_model("vit_tiny_patch16_224", pretrained_file=str(pth), depth=2, img_size=48, num_classes=1000)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k].numpy(), v.numpy())
    np.testing.assert_array_equal(b.mlp_head.weight.detach().numpy(), sd["head.weight"].numpy())  # same classes


def _flax_attention(q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, heads, mha):
    """timm Linear weights (out, in) -> Flax MultiHeadDotProductAttention kernels (D, heads, hd), (heads, hd, D)."""
    d = o_w.shape[0]
    out = {f"{mha}out/kernel": o_w.T.reshape(heads, d // heads, d), f"{mha}out/bias": o_b}
    for name, w, b in (("query", q_w, q_b), ("key", k_w, k_b), ("value", v_w, v_b)):
        out[f"{mha}{name}/kernel"] = w.T.reshape(d, heads, d // heads)
        out[f"{mha}{name}/bias"] = b.reshape(heads, d // heads)
    return out


def _write_npz(sd, path, layout):
    """A Google ViT .npz of a timm ViT-Ti state dict (jax names; written here, checked by timm's reader)."""
    n = lambda k: sd[k].numpy()  # noqa: E731
    d, heads = n("pos_embed").shape[-1], 3
    p = "params/" if layout == "big_vision" else ""
    pos_key = "pos_embedding" if layout == "big_vision" else "Transformer/posembed_input/pos_embedding"
    w = {p + "embedding/kernel": n("patch_embed.proj.weight").transpose(2, 3, 1, 0),
         p + "embedding/bias": n("patch_embed.proj.bias"),
         p + pos_key: n("pos_embed"),
         p + "Transformer/encoder_norm/scale": n("norm.weight"), p + "Transformer/encoder_norm/bias": n("norm.bias"),
         p + "head/kernel": n("head.weight").T, p + "head/bias": n("head.bias")}
    if "cls_token" in sd:
        w[p + "cls"] = n("cls_token")
    if "attn_pool.latent" in sd:  # big_vision's MAP head
        a, mp = "attn_pool.", p + "MAPHead_0/"
        kv_w, kv_b = n(a + "kv.weight").reshape(2, d, d), n(a + "kv.bias").reshape(2, d)
        w.update({mp + k: v for k, v in _flax_attention(n(a + "q.weight"), n(a + "q.bias"), kv_w[0], kv_b[0], kv_w[1],
                                                         kv_b[1], n(a + "proj.weight"), n(a + "proj.bias"), heads,
                                                         "MultiHeadDotProductAttention_0/").items()})
        w[mp + "probe"] = n(a + "latent")
        w[mp + "LayerNorm_0/scale"], w[mp + "LayerNorm_0/bias"] = n(a + "norm.weight"), n(a + "norm.bias")
        for r in range(2):
            w[f"{mp}MlpBlock_0/Dense_{r}/kernel"] = n(f"{a}mlp.fc{r + 1}.weight").T
            w[f"{mp}MlpBlock_0/Dense_{r}/bias"] = n(f"{a}mlp.fc{r + 1}.bias")
    mha, mlp, ln2 = (0, 0, 1) if layout == "big_vision" else (1, 3, 2)
    blocks = []
    for i in range(len({k.split(".")[1] for k in sd if k.startswith("blocks.")})):
        t, b = f"blocks.{i}.", {}
        b["LayerNorm_0/scale"], b["LayerNorm_0/bias"] = n(t + "norm1.weight"), n(t + "norm1.bias")
        b[f"LayerNorm_{ln2}/scale"], b[f"LayerNorm_{ln2}/bias"] = n(t + "norm2.weight"), n(t + "norm2.bias")
        qkv_w, qkv_b = n(t + "attn.qkv.weight").reshape(3, d, d), n(t + "attn.qkv.bias").reshape(3, d)
        b.update(_flax_attention(qkv_w[0], qkv_b[0], qkv_w[1], qkv_b[1], qkv_w[2], qkv_b[2], n(t + "attn.proj.weight"),
                                 n(t + "attn.proj.bias"), heads, f"MultiHeadDotProductAttention_{mha}/"))
        for r in range(2):
            b[f"MlpBlock_{mlp}/Dense_{r}/kernel"] = n(f"{t}mlp.fc{r + 1}.weight").T
            b[f"MlpBlock_{mlp}/Dense_{r}/bias"] = n(f"{t}mlp.fc{r + 1}.bias")
        blocks.append(b)
    if layout == "big_vision":  # scanned blocks: one array per name, the block index first
        w.update({f"{p}Transformer/encoderblock/{k}": np.stack([b[k] for b in blocks]) for k in blocks[0]})
    else:
        w.update({f"Transformer/encoderblock_{i}/{k}": v for i, b in enumerate(blocks) for k, v in b.items()})
    np.savez(path, **w)


@pytest.mark.parametrize("layout,pool", [("classic", "token"), ("big_vision", "token"), ("big_vision", "map")])
def test_npz_checkpoint_matches_timms_reader(tmp_path, layout, pool):
    kw = dict(depth=2, num_classes=6, global_pool=pool, class_token=pool == "token")
    sd, _ = _timm_file(tmp_path, "vit_tiny_patch16_224", **kw)
    path = str(tmp_path / "ckpt.npz")
    _write_npz(sd, path, layout)
    tm = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kw)
    timm_load_npz(tm, path)  # timm's own reader gives back the source weights: the file is a real .npz layout
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(v.numpy(), sd[k].numpy(), rtol=0, atol=1e-7, err_msg=k)
    vm = create_model("vit_tiny_patch16_224", pretrained_file=path, **kw)
    assert_same_outputs(tm, vm, np.random.default_rng(3).normal(size=(1, 3, 224, 224)).astype(np.float32))


def test_bad_requests_get_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="never downloads .*pretrained_file="):
        create_model("vit_tiny_patch16_224", pretrained=True)
    with pytest.raises(TypeError, match="not ResNet"):
        create_model(next(n for n in vitc.models.list_models() if "resnet" in n), pretrained_file="x.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        create_model("vit_tiny_patch16_224", pretrained_file=str(tmp_path / "nope.safetensors"), depth=1)
    odd = tmp_path / "w.ckpt"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown checkpoint type '.ckpt'"):
        create_model("vit_tiny_patch16_224", pretrained_file=str(odd), depth=1)
    broken = tmp_path / "broken.npz"
    np.savez(broken, **{"embedding/kernel": np.zeros((16, 16, 3, 8), np.float32)})
    with pytest.raises(ValueError, match="broken.npz lacks the ViT entry embedding/bias"):
        create_model("vit_tiny_patch16_224", pretrained_file=str(broken), depth=1)
    code = tmp_path / "code.pth"
    code.write_bytes(pickle.dumps({"w": print}, protocol=2))  # weights_only refuses globals: nothing is executed
    with pytest.raises(ValueError, match="code.pth .*weights_only=True"):
        create_model("vit_tiny_patch16_224", pretrained_file=str(code), depth=1)
    _, path = _timm_file(tmp_path, "vit_tiny_patch16_224", depth=1, patch_size=8, img_size=32)
    with pytest.raises(ValueError, match=r"patch size \(8, 8\) differs from the model's \(16, 16\)"):
        create_model("vit_tiny_patch16_224", pretrained_file=path, depth=1)
    with pytest.raises(ValueError, match="width 192 and depth 1 differ from the model's 192 and 2"):
        create_model("vit_tiny_patch16_224", pretrained_file=path, depth=2, patch_size=8, img_size=32)
    with pytest.raises(ValueError, match="(?s)does not fit ViT.*qkv"):  # another shape: load_state_dict's list
        create_model("vit_tiny_patch16_224", pretrained_file=path, depth=1, patch_size=8, img_size=32, qkv_bias=False)


def test_a_vitc_checkpoint_of_the_same_model_loads_as_it_is(tmp_path):
    vitc.manual_seed(5)
    src = create_model("vit_tiny_patch16_224", depth=1, img_size=32)
    vitc.save(src.state_dict(), tmp_path / "own.safetensors")
    vm = create_model("vit_tiny_patch16_224", depth=1, img_size=32, pretrained_file=str(tmp_path / "own.safetensors"))
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(vm.state_dict()[k].numpy(), v.numpy())
    with pytest.raises(ValueError, match="not a timm ViT checkpoint"):
        create_model("vit_tiny_patch16_224", depth=2, img_size=32, pretrained_file=str(tmp_path / "own.safetensors"))
