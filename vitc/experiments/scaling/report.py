"""Tables (results.md) and figures of the Scaling-ViT experiments, drawn from their results.json."""
import math
import os

import numpy as np

from vitc.eval import vit_train_flops
from vitc.eval.scaling_law import bootstrap_power_law, compare_shift, pareto_frontier
from vitc.io import write_text_atomic
from vitc.models.vit import SCALING_SHAPES

from ..common import pyplot, save_figure

__all__ = ["write_report", "fit_summary", "images_to_reach"]

# ViT-G/14 at 224 px as a config (building the 1.8e9-parameter model just to count it would take GBs)
_W, _D, _F, _H = SCALING_SHAPES["G"]
PAPER_G14 = dict(image_size=224, patch_size=14, channels=3, dim=_W, depth=_D, heads=_H, dim_head=_W // _H, mlp_dim=_F,
                 num_classes=1000, pool="map", class_token=False)


def _header(res, title):
    m = res.get("machine", {})
    return [f"# {title}", "",
            f"Command: `{res.get('command', 'python -m vitc.experiments.scaling ' + res['experiment'])}`  ",
            f"Machine: {m.get('cpu', '?')}, {m.get('cpu_count', '?')} logical CPUs, {m.get('threads', '?')} vitc "
            f"thread(s), load average at start {tuple(round(x, 1) for x in m.get('loadavg_at_start', ()))}  ",
            f"Size of this run: upstream classes {res['upstream_classes']} ({res['train_pool']} training images in "
            f"the pool, {res['test_images']} test images), held-out classes {res['heldout_classes']} "
            f"({res['config']['shot_pool']} training images per class to draw the {res['config']['shots']} shots from, "
            f"{res['fewshot_test_images']} test images, {res['config']['fewshot_seeds']} seeds); epochs of "
            f"{res['config']['chunk']} fresh images, batch {res['config']['batch_size']}, patch "
            f"{res['config']['patch']}, peak lr {res['config']['lr']:g}; wall time {res['wall_time_s']:.0f} s.",
            ""]


def _markdown(d, lines):
    """Write results.md; returns pyplot for the figures that follow."""
    write_text_atomic(os.path.join(d, "results.md"), "\n".join(lines) + "\n")
    return pyplot()


def _pct(x):
    return f"{100 * x:.1f}"


# ---- power law ------------------------------------------------------------------------------------

def fit_summary(points, key, bootstrap=1000, seed=0):
    """The law fitted to the Pareto frontier of (FLOPs, ``key``) with bootstrap intervals and the d > 0
    comparison; None when there are too few frontier points."""
    x = np.array([p["flops"] for p in points])
    e = np.array([p[key] for p in points])
    try:
        fit = bootstrap_power_law(x, e, n_boot=bootstrap, seed=seed)
        shift = compare_shift(x, e)
    except ValueError as err:
        return {"error": str(err)}
    return {"fit": fit, "shift": shift, "frontier": pareto_frontier(x, e).tolist()}


def images_to_reach(points, key, target):
    """Per model size, the images seen at which ``key`` first reaches ``target`` (log-linear between its
    budgets), or None if it never does."""
    out = {}
    for size in dict.fromkeys(p["config"]["size"] for p in points):
        pts = sorted((p["images_seen"], p[key]) for p in points if p["config"]["size"] == size)
        hit = None
        for (i0, e0), (i1, e1) in zip([(None, None)] + pts[:-1], pts):
            if e1 <= target:
                if i0 is None or e0 == e1:
                    hit = i1
                else:
                    t = (e0 - target) / (e0 - e1)
                    hit = float(math.exp(math.log(i0) + t * (math.log(i1) - math.log(i0))))
                break
        out[size] = hit
    return out


def _power_law(res, d, bootstrap):
    pts = res["points"]
    sizes = list(dict.fromkeys(p["config"]["size"] for p in pts))
    lines = _header(res, "Power law: error against training compute (Zhai et al. 2022, §2, Eq. 1)")
    lines += ["| model (WxDxMLPxH) | parameters | epochs | images seen | train FLOPs | upstream error % | "
              f"{res['config']['shots']}-shot error % (held-out) |", "|---|---|---|---|---|---|---|"]
    for p in pts:
        lines.append(f"| {p['config']['size']} | {p['params']:,} | {p['config']['epochs']} | {p['images_seen']:,} | "
                     f"{p['flops']:.3g} | {_pct(p['upstream_error'])} | {_pct(p['fewshot_error'])} |")
    fits = {}
    for key, label in (("upstream_error", "upstream"), ("fewshot_error", f"{res['config']['shots']}-shot")):
        fits[key] = s = fit_summary(pts, key, bootstrap)
        lines += ["", f"## Fit to the {label} error frontier", ""]
        if "error" in s:
            lines.append(f"No fit: {s['error']}")
            continue
        f, iv, sh = s["fit"], s["fit"].intervals, s["shift"]
        lines += [f"E = a·(C + d)^(−b) + c fitted to the {len(s['frontier'])} Pareto-frontier points of {len(pts)} "
                  f"(least squares on log E, bounds a, b > 0, 0 ≤ c < 1, d ≥ 0); {int(iv['level'] * 100)} % "
                  f"percentile intervals from {iv['used']} bootstrap resamples of the frontier points "
                  f"({iv['skipped']} skipped: too few distinct points).", "",
                  "| parameter | fit | interval |", "|---|---|---|"]
        for k in ("a", "b", "c", "d"):
            lo, hi = iv[k]
            lines.append(f"| {k} | {getattr(f, k):.4g} | [{lo:.4g}, {hi:.4g}] |")
        if len(s["frontier"]) <= f.num_params:
            lines += ["", f"With {len(s['frontier'])} frontier points for {f.num_params} parameters the curve passes "
                      "through every point: the resamples with enough distinct points are the original set, so the "
                      "intervals have no width and mean nothing. Use more sizes or budgets."]
        elif iv["b"][1] >= 19.9 or iv["a"][1] > 1e100:
            lines += ["", "Some resamples run b to the solver's bound (20) and a to huge values: with these few "
                      "frontier points a and b trade off against d, and only c (and the curve between the "
                      "points) is well determined."]
        p = "n/a (4 points)" if sh["p_value"] is None else f"{sh['p_value']:.3g}"
        lines += ["", f"Shift d: with d fixed at 0 the fit gives b = {sh['zero'].b:.3g}, c = {sh['zero'].c:.3g}; "
                  f"RSS {sh['free'].rss:.4g} (d free) vs {sh['zero'].rss:.4g} (d = 0), F-test p = {p}, AIC "
                  f"{sh['aic_free']:.1f} vs {sh['aic_zero']:.1f}: d > 0 is "
                  f"{'needed' if sh['needed'] else 'not needed'} on this frontier.",
                  f"Log residuals of the frontier points: max |log Ê − log E| = "
                  f"{float(np.max(np.abs(f.residuals))):.3f}."]
    # sample efficiency: images seen to reach a target error
    ups = [p["upstream_error"] for p in pts]
    target = float(np.round(np.median(ups), 3))
    reach = images_to_reach(pts, "upstream_error", target)
    lines += ["", f"## Images seen to reach {_pct(target)} % upstream error (the median of all points)", "",
              "| model | parameters | images seen |", "|---|---|---|"]
    params = {p["config"]["size"]: p["params"] for p in pts}
    for size in sizes:
        v = reach[size]
        lines.append(f"| {size} | {params[size]:,} | {'not reached' if v is None else f'{v:,.0f}'} |")
    lo_c, hi_c = min(p["flops"] for p in pts), max(p["flops"] for p in pts)
    g_flops = vit_train_flops(PAPER_G14, 3e9)
    lines += ["", f"Compute spanned: {lo_c:.3g} to {hi_c:.3g} FLOPs ({math.log10(hi_c / lo_c):.1f} decades). For "
              f"scale, ViT-G/14 seeing 3·10⁹ images (the paper's JFT-3B size, §2) costs {g_flops:.3g} FLOPs by the "
              f"same count, {math.log10(g_flops / hi_c):.1f} decades above this run's largest point."]
    _markdown(d, lines)
    _power_law_figures(pts, sizes, fits, target, d)
    return fits


def _power_law_figures(pts, sizes, fits, target, d):
    plt = pyplot()
    cmap = plt.get_cmap("viridis")
    colors = {s: cmap(i / max(len(sizes) - 1, 1)) for i, s in enumerate(sizes)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for col, (key, label) in enumerate((("upstream_error", "upstream test error"),
                                        ("fewshot_error", "10-shot error, held-out classes"))):
        ax, rax = axes[0, col], axes[1, col]
        for s in sizes:
            q = sorted((p["flops"], p[key]) for p in pts if p["config"]["size"] == s)
            ax.plot(*zip(*q), "o-", color=colors[s], ms=4, lw=0.8, alpha=0.8, label=s)
        summ = fits[key]
        if "fit" in summ:
            f = summ["fit"]
            xs = np.logspace(np.log10(min(p["flops"] for p in pts)), np.log10(max(p["flops"] for p in pts)), 200)
            ax.plot(f.compute, f.error, "s", mfc="none", mec="red", ms=9, label="Pareto frontier")
            ax.plot(xs, f.predict(xs), "r-", lw=1.5,
                    label=f"fit: b={f.b:.2f}, c={f.c:.3f}, d={f.d:.2g}")
            lo, hi = f.intervals["c"]
            ax.axhspan(lo, hi, color="red", alpha=0.08, label=f"c interval [{lo:.3f}, {hi:.3f}]")
            rax.axhline(0, color="k", lw=0.6)
            rax.plot(f.compute, f.residuals, "ro")
        ys = [p[key] for p in pts]
        ax.set_ylim(min(ys) / 1.25, max(ys) * 1.25)  # an interval of c reaching 0 must not squash the log axis
        rax.set_xscale("log")
        rax.set_xlabel("training compute (FLOPs, 3 × forward matmuls)")
        rax.set_ylabel("log Ê − log E")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    save_figure(fig, os.path.join(d, "power_law.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in sizes:
        q = sorted((p["images_seen"], p["upstream_error"]) for p in pts if p["config"]["size"] == s)
        ax.plot(*zip(*q), "o-", color=colors[s], label=s)
    ax.axhline(target, color="gray", ls=":", label=f"{100 * target:.1f} % (median)")
    ax.set_xscale("log")
    ax.set_xlabel("images seen")
    ax.set_ylabel("upstream test error")
    ax.legend(fontsize=7)
    save_figure(fig, os.path.join(d, "images_seen.png"))


# ---- sweeps ---------------------------------------------------------------------------------------

def _heads(res, d):
    rows = res["rows"]
    lines = _header(res, f"Heads: class token vs GAP vs MAP (Zhai et al. 2022, §3.2), model {res['size']}, "
                         f"{res['epochs']} epochs")
    lines += ["| pool | seed | parameters | upstream error % | 10-shot error % |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['pool']} | {r['seed']} | {r['params']:,} | {_pct(r['upstream_error'])} | "
                     f"{_pct(r['fewshot_error'])} |")
    means = {}
    for pool in ("cls", "gap", "map"):
        rs = [r for r in rows if r["pool"] == pool]
        means[pool] = (float(np.mean([r["upstream_error"] for r in rs])), float(np.mean([r["fewshot_error"]
                                                                                      for r in rs])))
    lines += ["", "Means over seeds: " + ", ".join(f"{k} {_pct(u)} % / {_pct(f)} %" for k, (u, f) in means.items())
              + " (upstream / 10-shot)."]
    plt = _markdown(d, lines)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = np.arange(3)
    for j, (lab, i) in enumerate((("upstream", 0), ("10-shot", 1))):
        ax.bar(xs + 0.38 * j, [means[p][i] for p in ("cls", "gap", "map")], 0.36, label=lab)
        for r in rows:
            ax.plot(xs[("cls", "gap", "map").index(r["pool"])] + 0.38 * j,
                    r["upstream_error" if i == 0 else "fewshot_error"], "k.")
    ax.set_xticks(xs + 0.19)
    ax.set_xticklabels(["class token", "GAP", "MAP"])
    ax.set_ylabel("error (bars: mean, dots: seeds)")
    ax.legend()
    save_figure(fig, os.path.join(d, "heads.png"))
    return means


def _weight_decay(res, d):
    hs, bs = res["head_decays"], res["body_decays"]
    up = np.full((len(hs), len(bs)), np.nan)
    few = np.full_like(up, np.nan)
    for c in res["cells"]:
        i, j = hs.index(c["wd_head"]), bs.index(c["wd_body"])
        up[i, j], few[i, j] = c["upstream_error"], c["fewshot_error"]
    lines = _header(res, f"Head/body weight decay (Zhai et al. 2022, §3.1), model {res['size']}, "
                         f"{res['epochs']} epochs")
    lines += ["Decay per update = lr_t × wd (AdamW, decoupled; kernels only; head = the final Linear).", ""]
    for name, m in (("upstream error %", up), ("10-shot error % (held-out classes)", few)):
        lines += [f"{name}: rows head decay, columns body decay", "",
                  "| head \\ body | " + " | ".join(f"{b:g}" for b in bs) + " |", "|---" * (len(bs) + 1) + "|"]
        for i, h in enumerate(hs):
            lines.append(f"| {h:g} | " + " | ".join(_pct(v) for v in m[i]) + " |")
        lines.append("")
    bi = np.unravel_index(np.nanargmin(few), few.shape)
    ui = np.unravel_index(np.nanargmin(up), up.shape)
    verdict = {"best_fewshot": (hs[bi[0]], bs[bi[1]]), "best_upstream": (hs[ui[0]], bs[ui[1]]),
               "fewshot_off_diagonal": hs[bi[0]] != bs[bi[1]], "fewshot_head_above_body": hs[bi[0]] > bs[bi[1]],
               "upstream_at_highest_head": float(np.nanmean(up[-1])),
               "upstream_at_lowest_head": float(np.nanmean(up[0]))}
    lines += [f"Best 10-shot cell: head {hs[bi[0]]:g}, body {bs[bi[1]]:g} "
              f"({'off' if verdict['fewshot_off_diagonal'] else 'on'} the diagonal"
              f"{', head decay above body decay' if verdict['fewshot_head_above_body'] else ''}); best upstream cell: "
              f"head {hs[ui[0]]:g}, body {bs[ui[1]]:g}. Mean upstream error at the highest head decay "
              f"{_pct(verdict['upstream_at_highest_head'])} % vs the lowest "
              f"{_pct(verdict['upstream_at_lowest_head'])} %."]
    plt = _markdown(d, lines)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, m, title in ((axes[0], up, "upstream error"), (axes[1], few, "10-shot error (held-out)")):
        im = ax.imshow(m, cmap="viridis_r", origin="lower")
        for i in range(len(hs)):
            for j in range(len(bs)):
                ax.text(j, i, _pct(m[i, j]), ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(len(bs)))
        ax.set_xticklabels([f"{b:g}" for b in bs])
        ax.set_yticks(range(len(hs)))
        ax.set_yticklabels([f"{h:g}" for h in hs])
        ax.set_xlabel("body weight decay")
        ax.set_ylabel("head weight decay")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    save_figure(fig, os.path.join(d, "weight_decay.png"))
    return verdict


def _optimizers(res, d):
    rows = res["rows"]
    lines = _header(res, f"Optimizers (Zhai et al. 2022, §3.4), model {res['size']}, {res['epochs']} epochs")
    lines += ["| optimizer | upstream error % | 10-shot error % | state bytes (exact) | state / parameter bytes | "
              "peak allocator MiB | ms / step (noisy: shared, loaded machine) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['optimizer']} | {_pct(r['upstream_error'])} | {_pct(r['fewshot_error'])} | "
                     f"{r['state_bytes']:,} | {r['state_bytes'] / r['param_bytes']:.2f} | "
                     f"{r['peak_bytes'] / 2**20:.2f} | {1e3 * r['step_time_s']:.0f} |")
    tr = res["trace"]
    f32, bf, ex = (np.array(tr[k]) for k in ("f32", "bf16", "exact"))
    end = len(ex) - 1
    lines += ["", f"Why a bfloat16 second moment fails: Adam's v (β2 = 0.999) fed gradients of scale 1 for "
              f"{tr['steps_high']} steps, then of scale 1/{tr['drop']:g}. bfloat16 keeps 8 significant bits, so a "
              f"stored value moves only if the update changes it by more than half an ulp, at least 2⁻⁹ ≈ 0.002 "
              f"relative; "
              f"each step changes v by (1 − β2)(g²/v − 1), at most 0.001 relative when g² ≪ v. "
              f"The float32 v follows "
              f"the exact EMA (v/v_exact = {f32[end] / ex[end]:.3f} at the end); the bfloat16 v stays stuck at "
              f"{bf[end] / ex[end]:.1f}× the exact value at the end (it cannot decay while g² ≪ v), "
              f"so Adam's steps "
              f"are about {math.sqrt(bf[end] / ex[end]):.1f}× too small from then on."]
    plt = _markdown(d, lines)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["optimizer"] for r in rows]
    axes[0].bar(names, [r["state_bytes"] / r["param_bytes"] for r in rows])
    axes[0].set_ylabel("optimizer state / parameter bytes")
    for i, r in enumerate(rows):
        axes[0].text(i, r["state_bytes"] / r["param_bytes"], f"err {_pct(r['upstream_error'])} %", ha="center",
                     va="bottom", fontsize=8)
    steps = np.arange(1, len(ex) + 1)
    axes[1].plot(steps, f32 / ex, label="float32 v / exact")
    axes[1].plot(steps, bf / ex, label="bfloat16 v / exact")
    axes[1].axvline(tr["steps_high"], color="gray", ls=":", label=f"gradient scale ÷{tr['drop']:g}")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("stored v / exact EMA")
    axes[1].legend(fontsize=8)
    save_figure(fig, os.path.join(d, "optimizers.png"))
    return rows


def _rsqrt_vs_linear(res, d):
    lines = _header(res, f"One rsqrt run with cooldown branches vs separate linear-decay runs (Zhai et al. 2022, "
                         f"§3.5), model {res['size']}")
    lines += ["| epochs | images seen | rsqrt + cooldown error % | linear error % | rsqrt 10-shot % | "
              "linear 10-shot % |",
              "|---|---|---|---|---|---|"]
    for r, lin in zip(res["rsqrt"], res["linear"]):
        lines.append(f"| {r['config']['epochs']} | {r['images_seen']:,} | {_pct(r['upstream_error'])} | "
                     f"{_pct(lin['upstream_error'])} | {_pct(r['fewshot_error'])} | {_pct(lin['fewshot_error'])} |")
    cost = res["cost_flops"]
    diff = [r["upstream_error"] - lin["upstream_error"] for r, lin in zip(res["rsqrt"], res["linear"])]
    lines += ["", f"Training compute of the protocols: one rsqrt run with its branches "
              f"{cost['rsqrt_with_branches']:.3g} "
              f"FLOPs, separate linear runs {cost['separate_linear_runs']:.3g} FLOPs "
              f"({cost['separate_linear_runs'] / cost['rsqrt_with_branches']:.2f}×). Upstream error rsqrt − linear "
              f"per budget: {', '.join(f'{100 * x:+.1f}' for x in diff)} points (mean {100 * np.mean(diff):+.1f})."]
    plt = _markdown(d, lines)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for rows, lab, m in ((res["rsqrt"], "rsqrt + cooldown branch", "o-"), (res["linear"], "linear decay run", "s--")):
        axes[0].plot([r["images_seen"] for r in rows], [r["upstream_error"] for r in rows], m, label=lab)
        for r in rows:
            axes[1].plot(np.arange(1, len(r["history"]["lr"]) + 1), r["history"]["lr"], m[:-1] if "-" in m else m,
                         ms=2, lw=0.8, alpha=0.7)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("images seen")
    axes[0].set_ylabel("upstream test error")
    axes[0].legend()
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("lr at the start of the epoch")
    save_figure(fig, os.path.join(d, "rsqrt_vs_linear.png"))
    return diff


def write_report(name, res, d, bootstrap=1000):
    """results.md and the figures of experiment ``name`` into folder ``d``; returns the summary numbers."""
    os.makedirs(d, exist_ok=True)
    if name == "power-law":
        return _power_law(res, d, bootstrap)
    return {"heads": _heads, "weight-decay": _weight_decay, "optimizers": _optimizers,
            "rsqrt-vs-linear": _rsqrt_vs_linear}[name](res, d)
