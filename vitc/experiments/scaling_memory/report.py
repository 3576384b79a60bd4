"""Tables and figures of the memory/speed sweep."""
import statistics

from ..common import pyplot, save_figure

__all__ = ["summary", "markdown", "plots"]

MEMORY_TARGET, TIME_TARGET = 0.10, 0.25


def _stats(errs, target):
    a = [abs(e) for e in errs]
    return dict(n=len(a), median=statistics.median(a) if a else float("nan"), max=max(a) if a else float("nan"),
                within=sum(x <= target for x in a))


def summary(runs, cap):
    """Error distributions (overall and per setup) and the fits agreement under cap."""
    out = {"memory": _stats([r["memory_error"] for r in runs], MEMORY_TARGET),
           "time": _stats([r["time_error"] for r in runs], TIME_TARGET),
           "time_load_adjusted": _stats([r["time_error_load_adjusted"] for r in runs], TIME_TARGET), "setups": {}}
    for s in sorted({r["setup"] for r in runs}):
        rs = [r for r in runs if r["setup"] == s]
        out["setups"][s] = dict(memory=_stats([r["memory_error"] for r in rs], MEMORY_TARGET),
                                time=_stats([r["time_error"] for r in rs], TIME_TARGET),
                                time_load_adjusted=_stats([r["time_error_load_adjusted"] for r in rs], TIME_TARGET),
                                fits=sum(_fits(r, cap, "measured") for r in rs))
    out["fits_agree"] = sum(_fits(r, cap, "predicted") == _fits(r, cap, "measured") for r in runs)
    return out


def _fits(r, cap, which):
    return r[f"{which}_peak"] + r["input_bytes"] <= cap


def _mib(n):
    return f"{n / 2 ** 20:.1f}"


def markdown(res):
    runs, cap, s = res["runs"], res["memory_cap"], res["summary"]
    lines = [f"# Memory/speed sweep: {len(runs)} runs ({res['size']})", "",
             f"Batch {res['config']['batch_size']}, {res['config']['image_size']} px, patch {res['config']['patch']}, "
             f"{res['threads']} thread(s), step time = fastest of {res['config']['repeats']} steps, "
             f"memory cap {_mib(cap)} MiB, wall time {res['wall_time_s'] / 60:.1f} min.", "",
             "| error of the planner | n | median abs | max abs | within target |", "|---|---|---|---|---|"]
    for key, target in (("memory", MEMORY_TARGET), ("time", TIME_TARGET), ("time_load_adjusted", TIME_TARGET)):
        st = s[key]
        lines.append(f"| {key} (all) | {st['n']} | {100 * st['median']:.1f} % | {100 * st['max']:.1f} % | "
                     f"{st['within']}/{st['n']} within {int(100 * target)} % |")
        for name, ss in s["setups"].items():
            t = ss[key]
            lines.append(f"| {key}, {name} | {t['n']} | {100 * t['median']:.1f} % | {100 * t['max']:.1f} % | "
                         f"{t['within']}/{t['n']} |")
    lines += ["", f"Fits under {_mib(cap)} MiB: the planner and the measurement agree on {s['fits_agree']}/{len(runs)} "
              "configurations; measured fits per setup: " +
              ", ".join(f"{k} {v['fits']}" for k, v in s["setups"].items()) + ".", "",
              "time_load_adjusted = the planner's time × the load factor (the load gauge around the run over the "
              "gauge at calibration).", "",
              "| setup | depth | width | MLP | params | state bytes (exact) | peak MiB pred | peak MiB meas | err | "
              "RSS peak MiB | step s pred | load factor | step s meas | err | err load-adj. | fits pred/meas |",
              "|" + "---|" * 16]
    for r in runs:
        lines.append(f"| {r['setup']} | {r['depth']} | {r['width']} | {r['mlp']} | {r['params']:,} | "
                     f"{r['state_bytes']:,} | {_mib(r['predicted_peak'])} | {_mib(r['measured_peak'])} | "
                     f"{100 * r['memory_error']:+.1f} % | {_mib(r['rss_peak'])} | {r['predicted_seconds']:.3f} | "
                     f"{r['measured_seconds']:.3f} | {100 * r['time_error']:+.1f} % | "
                     f"{'yes' if _fits(r, cap, 'predicted') else 'no'}/{'yes' if _fits(r, cap, 'measured') else 'no'} |")
    return "\n".join(lines) + "\n"


def plots(res, out_dir):
    """fits_map.png and predicted_vs_measured.png into out_dir; returns their paths."""
    import os
    plt = pyplot()
    runs, cap = res["runs"], res["memory_cap"]
    setups = list(dict.fromkeys(r["setup"] for r in runs))
    mlps = sorted({r["mlp"] / r["width"] for r in runs})
    depths, widths = sorted({r["depth"] for r in runs}), sorted({r["width"] for r in runs})
    fig, axes = plt.subplots(len(mlps), len(setups), figsize=(3.6 * len(setups), 3.0 * len(mlps)), squeeze=False)
    for i, ratio in enumerate(mlps):
        for j, s in enumerate(setups):
            ax = axes[i][j]
            for r in runs:
                if r["setup"] != s or abs(r["mlp"] / r["width"] - ratio) > 1e-9:
                    continue
                x, y = widths.index(r["width"]), depths.index(r["depth"])
                fm, fp = _fits(r, cap, "measured"), _fits(r, cap, "predicted")
                ax.add_patch(plt.Rectangle((x - .45, y - .45), .9, .9, color="#9c9" if fm else "#e99"))
                ax.text(x, y, f"{_mib(r['measured_peak'])}\n({_mib(r['predicted_peak'])})" + ("" if fm == fp else " ≠"),
                        ha="center", va="center", fontsize=7)
            ax.set_xlim(-.5, len(widths) - .5)
            ax.set_ylim(-.5, len(depths) - .5)
            ax.set_xticks(range(len(widths)), widths)
            ax.set_yticks(range(len(depths)), depths)
            ax.set_title(f"{s}, MLP {ratio:g}×width", fontsize=9)
            ax.set_xlabel("width")
            ax.set_ylabel("depth")
    fig.suptitle(f"Fits in {_mib(cap)} MiB (green) or not (red): measured peak MiB (predicted); "
                 f"{len(runs)} runs, batch {res['config']['batch_size']}", fontsize=10)
    fig.tight_layout()
    p1 = os.path.join(out_dir, "fits_map.png")
    save_figure(fig, p1)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for s in setups:
        rs = [r for r in runs if r["setup"] == s]
        a1.scatter([r["measured_peak"] / 2 ** 20 for r in rs], [r["predicted_peak"] / 2 ** 20 for r in rs], label=s, s=14)
        a2.scatter([r["measured_seconds"] for r in rs], [r["predicted_seconds"] for r in rs], label=s, s=14)
        a2.scatter([r["measured_seconds"] for r in rs], [r["predicted_seconds_load_adjusted"] for r in rs], s=10,
                   marker="x", color=a2.collections[-1].get_facecolor()[0], label=f"{s}, load-adjusted")
    for ax, unit, tol in ((a1, "peak MiB", MEMORY_TARGET), (a2, "step s", TIME_TARGET)):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k-", lw=.8)
        ax.plot([lo, hi], [lo * (1 + tol), hi * (1 + tol)], "k:", lw=.8)
        ax.plot([lo, hi], [lo * (1 - tol), hi * (1 - tol)], "k:", lw=.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {unit}")
        ax.set_ylabel(f"predicted {unit}")
        ax.legend(fontsize=8)
    a1.set_title(f"memory (dotted ±{int(100 * MEMORY_TARGET)} %)", fontsize=9)
    a2.set_title(f"step time, fastest of {res['config']['repeats']} (dotted ±{int(100 * TIME_TARGET)} %)", fontsize=9)
    fig.suptitle(f"vitc.plan vs measurement, {len(runs)} runs ({res['size']})", fontsize=10)
    fig.tight_layout()
    p2 = os.path.join(out_dir, "predicted_vs_measured.png")
    save_figure(fig, p2)
    return [p1, p2]
