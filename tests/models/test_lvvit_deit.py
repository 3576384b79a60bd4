"""LV-ViT's aux head and MixToken on DeiT (a distillation token): parity with a torch reimplementation
(tests/models/torch_lvvit.py with dist=True: the TokenLabeling definitions plus DeiT's distillation token
and head) for the training outputs, the loss, every gradient, a few AdamW steps and the eval rule; and
every combination of the composable options builds, trains and learns without NaN."""
import itertools
import os
import sys

import numpy as np
import pytest
import torch

import vitc
from vitc import optim
from vitc.losses import TokenLabelingLoss
from vitc.models import DeiT, ViT
from vitc.models.lvvit import to_official_state_dict

sys.path.insert(0, os.path.dirname(__file__))
from torch_lvvit import LVViT, token_label_ce  # noqa: E402

CFG = dict(image_size=16, patch_size=4, num_classes=6, channels=2, dim=24, depth=2, heads=3, dim_head=8,
           mlp_dim=72, patch_embed="conv", stem_width=8, skip_lam=2.0, aux_head=True, mix_token=True, init="timm")


def _pair(seed=0):
    vitc.manual_seed(seed)
    vm = DeiT(**CFG)
    tm = LVViT(16, 4, 2, 6, 24, 2, 3, 72, 2.0, 8, dist=True)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in to_official_state_dict(vm).items()}, strict=True)
    return vm, tm


def _data(b, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, 2, 16, 16)).astype(np.float32)
    y = rng.dirichlet(np.ones(6), b).astype(np.float32)
    yt = rng.dirichlet(np.ones(6), (b, 16)).astype(np.float32)
    packed = torch.cat([torch.tensor(y)[:, None], torch.tensor(y)[:, None], torch.tensor(yt)], 1)
    return x, y, yt, packed


def test_training_outputs_loss_and_every_gradient_match_torch():
    vm, tm = _pair()
    vm.train(), tm.train()
    x, y, yt, packed = _data(5)
    draw = (0.5, 2, 1)
    out = vm(vitc.tensor(x), mix_draw=draw)
    t_out = tm(torch.tensor(x), draw=draw)
    assert out.lam < 1
    for got, want in ((out.cls_logits, t_out[0]), (out.token_logits, t_out[1]), (out.dist_logits, t_out[3])):
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    loss = TokenLabelingLoss(beta=0.5)(out, vitc.tensor(y), vitc.tensor(yt))
    t_loss = token_label_ce(t_out, packed, dense_weight=0.5)
    np.testing.assert_allclose(loss.item(), t_loss.item(), rtol=1e-5)
    loss.backward()
    t_loss.backward()
    vg = to_official_state_dict(vm, {n: p.grad for n, p in vm.named_parameters()})
    assert {"dist_token", "head_dist.weight"} <= set(vg)
    for n, p in tm.named_parameters():
        np.testing.assert_allclose(vg[n], p.grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=n)


def test_adamw_steps_match_torch():
    vm, tm = _pair(seed=4)
    vm.train(), tm.train()
    vo = optim.AdamW(vm.parameters(), lr=1e-3, weight_decay=0.05)
    to = torch.optim.AdamW(tm.parameters(), lr=1e-3, weight_decay=0.05)
    for step in range(3):
        x, y, yt, packed = _data(4, seed=20 + step)
        draw = (0.2 + 0.25 * step, (step + 1) % 4, step % 4)
        vo.zero_grad(), to.zero_grad()
        TokenLabelingLoss(beta=1.0)(vm(vitc.tensor(x), mix_draw=draw), vitc.tensor(y), vitc.tensor(yt)).backward()
        token_label_ce(tm(torch.tensor(x), draw=draw), packed, dense_weight=1.0).backward()
        vo.step(), to.step()
    vs = to_official_state_dict(vm)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(vs[name], p.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_eval_rule_adds_the_aux_term_to_each_head():
    vm, tm = _pair(seed=1)
    vm.eval(), tm.eval()
    x = _data(3)[0]
    np.testing.assert_allclose(vm(vitc.tensor(x)).detach().numpy(), tm(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    z_cls, z_dist = (vm(vitc.tensor(x), head=h).detach().numpy() for h in ("cls", "dist"))
    vm.infer = "cls"
    plain_cls, plain_dist = (vm(vitc.tensor(x), head=h).detach().numpy() for h in ("cls", "dist"))
    bonus = z_cls - plain_cls  # 0.5·max over the tokens' aux logits, the same for both heads
    np.testing.assert_allclose(z_dist - plain_dist, bonus, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        h = tm.norm(_torch_tokens(tm, torch.tensor(x)))
        want = 0.5 * tm.aux_head(h[:, 2:]).max(1)[0]
        np.testing.assert_allclose(plain_cls, tm.head(h[:, 0]).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bonus, want.numpy(), rtol=1e-4, atol=1e-5)
    s = vm(vitc.tensor(x), head="sum_softmax").detach().numpy()  # infer='cls': the plain DeiT fusion
    np.testing.assert_allclose(s, _softmax(plain_cls) + _softmax(plain_dist), rtol=1e-5, atol=1e-6)
    vm.infer = "aux"
    s = vm(vitc.tensor(x), head="sum_softmax").detach().numpy()
    np.testing.assert_allclose(s, _softmax(z_cls) + _softmax(z_dist), rtol=1e-5, atol=1e-6)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _torch_tokens(tm, x):
    h = tm.patch_embed(x).flatten(2).transpose(1, 2)
    b = h.shape[0]
    h = torch.cat((tm.cls_token.expand(b, -1, -1), tm.dist_token.expand(b, -1, -1), h), 1) + tm.pos_embed
    for blk in tm.blocks:
        h = blk(h)
    return h


def test_mixtoken_leaves_the_prefix_tokens_and_dist_target():
    vm, _ = _pair(seed=2)
    vm.train()
    x, y, yt, _ = _data(4)
    # λ = 0 on the 4×4 grid gives sample b every patch token of sample B−1−b; the class and distillation
    # tokens are parameters, untouched, so its class and distillation logits are those of the flipped batch
    out = vm(vitc.tensor(x), mix_draw=(0.0, 2, 2))
    assert out.lam == 0.0
    flipped = vm(vitc.tensor(np.ascontiguousarray(x[::-1])), mix_draw=(1.0, 0, 0))
    for got, want in ((out.cls_logits, flipped.cls_logits), (out.dist_logits, flipped.dist_logits)):
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    # the token logits come back swapped, lined up with their own images: those of the unflipped batch
    own = vm(vitc.tensor(x), mix_draw=(1.0, 0, 0))
    np.testing.assert_allclose(out.token_logits.detach().numpy(), own.token_logits.detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    # dist_target: the distillation head's half of the class term uses it, mixed by λ like the class target
    yd = np.eye(6, dtype=np.float32)[[1, 2, 3, 4]]
    got = TokenLabelingLoss(beta=0.0)(own, vitc.tensor(y), dist_target=vitc.tensor(yd)).item()
    ce = torch.nn.functional.cross_entropy
    want = 0.5 * (ce(torch.tensor(own.cls_logits.detach().numpy()), torch.tensor(y))
                  + ce(torch.tensor(own.dist_logits.detach().numpy()), torch.tensor(yd)))
    assert got == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(ValueError, match="dist_target"):
        TokenLabelingLoss()(own[:3], vitc.tensor(y), dist_target=vitc.tensor(yd))
    with pytest.raises(ValueError, match="mix_draw"):
        vm(vitc.tensor(x), head="avg", mix_draw=(0.5, 1, 1))


def _loss(m, out, y):
    if isinstance(out, tuple) and len(out) >= 3:
        return TokenLabelingLoss(beta=0.5)(out, y)
    if isinstance(out, tuple):  # DeiT without an aux head: both heads on the label
        return (vitc.cross_entropy(out[0], y) + vitc.cross_entropy(out[1], y)) * 0.5
    return vitc.cross_entropy(out, y)


# attn × norm × distillation token × drop path × patch embedding × (aux head, MixToken)
MATRIX = list(itertools.product(("mhsa", "reattention"), ("layer", "batch"), (False, True), (0.0, 0.3),
                                ("linear", "conv"), ((False, False), (True, False), (True, True))))


def test_every_combination_builds_trains_and_learns():
    rng = np.random.default_rng(0)
    x = vitc.tensor(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))
    y = vitc.tensor(np.array([0, 1, 2, 1]))
    for attn, norm, dist, dp, embed, (aux, mix) in MATRIX:
        name = f"{attn}/{norm}/dist={dist}/dp={dp}/{embed}/aux={aux}/mix={mix}"
        cfg = dict(image_size=8, patch_size=4, num_classes=3, channels=1, dim=16, depth=2, heads=2, dim_head=8,
                   mlp_dim=32, attn=attn, norm=norm, drop_path=dp, patch_embed=embed, stem_width=4, aux_head=aux,
                   mix_token=mix)
        vitc.manual_seed(0)
        m = (DeiT if dist else ViT)(**cfg)
        m.train()
        opt = optim.AdamW(m.parameters(), lr=3e-3)
        kw = dict(mix_draw=(0.5, 1, 0)) if mix else {}

        def loss_at(seed):
            vitc.manual_seed(seed)  # the same drop-path draws for the before/after comparison
            return _loss(m, m(x, **kw), y)
        first = loss_at(7).item()
        for step in range(6):
            opt.zero_grad()
            loss = loss_at(step)
            loss.backward()
            grads = [p.grad for p in m.parameters() if p.requires_grad]
            assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads), name
            opt.step()
        last = loss_at(7).item()
        assert np.isfinite(first) and np.isfinite(last) and last < first, (name, first, last)
        m.eval()
        z = m(x)
        assert tuple(z.shape) == (4, 3) and np.isfinite(z.detach().numpy()).all(), name
    with pytest.raises(ValueError, match="mix_token=True needs aux_head"):
        DeiT(**dict(CFG, aux_head=False))
