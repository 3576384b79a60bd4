"""The five experiments of python -m vitc.experiments.scaling. Each returns a JSON-able dict; every
finished unit (a cooldown branch, a grid cell, a run) is cached under OUT/<experiment>/ so a rerun
with the same settings skips it (resumable)."""
import os
import shutil

import numpy as np

import vitc
from vitc import optim
from vitc.optim.lr_scheduler import RsqrtLR
from vitc.train import branch_cooldowns, latest_checkpoint

from .runs import OPTIMIZERS, cached, evaluate_point, make_model, make_optimizer, run_fit, train_flops

__all__ = ["power_law", "heads", "weight_decay", "optimizers", "rsqrt_vs_linear", "bf16_second_moment_trace"]


def _rsqrt(opt, args, total_steps):
    return RsqrtLR(opt, total_steps, warmup_steps=args.warmup, timescale=args.timescale,
                         cooldown_steps=max(1, int(round(args.cooldown * total_steps))))


def _linear(opt, args, total_steps):
    """Warmup then linear decay to 0: RsqrtLR with an infinite timescale and the cooldown spanning
    everything after the warmup (the same schedule function, P §3.5)."""
    return RsqrtLR(opt, total_steps, warmup_steps=args.warmup, timescale=1e30,
                         cooldown_steps=total_steps - args.warmup)


def _cooled_runs(tag, size, branch_epochs, args, data, tracker, pool="map", seed=0, opt_name="adam-f32",
                 wd=None):
    """One rsqrt run of max(branch_epochs) epochs whose own cooldown is the longest budget, plus one
    cooldown branch (vitc.train.branch_cooldowns) per shorter budget, each started from the long run's
    checkpoint just before its cooldown. Returns one evaluated point per budget."""
    spe = args.chunk // args.batch_size
    budgets = sorted(set(branch_epochs))
    longest = budgets[-1]
    wd_head, wd_body = wd if wd is not None else (args.wd_head, args.wd_body)
    base = os.path.join(args.out, tag, "ckpt", size)

    def make():
        model = make_model(size, data.num_classes, args.patch, pool=pool, seed=seed)
        opt = make_optimizer(model, opt_name, args.lr, wd_head, wd_body)
        return model, opt, _rsqrt(opt, args, longest * spe)

    points, long_model = [], {}

    def long_run():
        if "hist" in long_model:
            return long_model["hist"]
        model, opt, sched = make()
        config = {"size": size, "epochs": longest, "pool": pool, "optimizer": opt_name}
        hist, run_id = tracker.run(f"{tag}-{size}-long", config,
                                   lambda log: run_fit(model, opt, sched, data, args, longest,
                                                       os.path.join(base, "long"), log, seed))
        long_model["m"], long_model["hist"] = model, hist
        return hist

    for e in budgets:
        cfg = {"size": size, "pool": pool, "optimizer": opt_name, "wd": [wd_head, wd_body], "epochs": e,
               "chunk": args.chunk, "batch": args.batch_size, "lr": args.lr, "warmup": args.warmup,
               "timescale": args.timescale, "cooldown": args.cooldown, "patch": args.patch, "seed": seed,
               "upstream": list(data.upstream), "test": len(data.test)}

        def compute(e=e):
            steps = e * spe
            if e == longest:
                hist = long_run()
                model = long_model["m"]
                extra_epochs = 0
            else:
                if "m" not in long_model:
                    long_run()  # the branches start from its checkpoints
                cool = max(1, int(round(args.cooldown * steps)))
                start_epoch = (steps - cool) // spe  # the newest checkpoint before the cooldown starts
                src = os.path.join(base, "long", f"ckpt-{start_epoch:06d}")
                if start_epoch < 1 or not os.path.isdir(src):
                    raise ValueError(f"{tag}: budget {e} epochs needs the long run's checkpoint {src}; use budgets "
                                     f"whose cooldown starts after epoch 1")
                made = {}

                def make_keep():
                    made["m"], opt, sched = make()
                    return made["m"], opt, sched
                train, test = data.loaders(args.chunk, args.batch_size, seed)
                res = branch_cooldowns(src, [(steps, cool)], make_keep, train, test, vitc.nn.CrossEntropyLoss(),
                                       os.path.join(base, "branches"), log=None, keep_checkpoints=1)
                hist, model = res[(steps, cool)], made["m"]
                extra_epochs = e - start_epoch
            point = evaluate_point(model, data, shots=args.shots, seeds=args.fewshot_seeds)
            images = e * spe * args.batch_size
            return dict(point, images_seen=images, flops=train_flops(model, images),
                        params=model.num_parameters(), extra_epochs=extra_epochs,
                        history={"test_accuracy": hist["test_accuracy"], "train_loss": hist["train_loss"],
                                 "lr": hist["lr"], "train_time": hist["train_time"]})
        points.append(cached(os.path.join(args.out, tag, "points", f"{size}_{pool}_{opt_name}_"
                                          f"h{wd_head:g}_b{wd_body:g}_e{e}.json"), cfg, compute))
        print(f"  {tag} {size} {pool} {opt_name} {e:3d} epochs: upstream err {points[-1]['upstream_error']:.3f}, "
              f"{args.shots}-shot err {points[-1]['fewshot_error']:.3f}", flush=True)
    if not args.keep_checkpoints:
        shutil.rmtree(base, ignore_errors=True)
        _remove_if_empty(os.path.dirname(base))
    return points


def _remove_if_empty(path):
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty (another size's checkpoints) or already gone


def power_law(args, data, tracker):
    """One rsqrt run with cooldown branches per model size (P §2, Fig. 1-2)."""
    out = {"sizes": args.sizes, "budgets": args.budgets, "points": []}
    for size in args.sizes:
        out["points"] += _cooled_runs("power-law", size, args.budgets, args, data, tracker)
    return out


def heads(args, data, tracker):
    """The same model with a class token, global average pooling or MAP pooling (P §3.2, Fig. 4)."""
    rows = []
    for pool in ("cls", "gap", "map"):
        for seed in range(args.seeds):
            p = _cooled_runs("heads", args.size, [args.epochs], args, data, tracker, pool=pool, seed=seed)[0]
            rows.append(dict(p, pool=pool, seed=seed))
    return {"size": args.size, "epochs": args.epochs, "rows": rows}


def weight_decay(args, data, tracker):
    """Head × body weight-decay grid (P §3.1, Fig. 3): upstream error and few-shot transfer per cell."""
    cells = []
    for wh in args.head_decays:
        for wb in args.body_decays:
            p = _cooled_runs("weight-decay", args.size, [args.epochs], args, data, tracker, wd=(wh, wb))[0]
            cells.append(dict(p, wd_head=wh, wd_body=wb))
    return {"size": args.size, "epochs": args.epochs, "head_decays": args.head_decays,
            "body_decays": args.body_decays, "cells": cells}


def optimizers(args, data, tracker):
    """Adam f32 / bf16 first moment / bf16 second moment / Adafactor (P §3.4): error, exact optimizer state
    bytes, peak allocator memory of the run, seconds per step."""
    rows = []
    for name in OPTIMIZERS:
        def measure(name=name):
            model = make_model(args.size, data.num_classes, args.patch)
            opt = make_optimizer(model, name, args.lr, args.wd_head, args.wd_body)
            spe = args.chunk // args.batch_size
            sched = _rsqrt(opt, args, args.epochs * spe)
            vitc.empty_cache()
            vitc.reset_peak_memory_stats()
            live0 = vitc.memory_stats()["live_bytes"]
            hist, _ = tracker.run(f"optimizers-{name}", {"optimizer": name, "size": args.size},
                                  lambda log: run_fit(model, opt, sched, data, args, args.epochs,
                                                      os.path.join(args.out, "optimizers", "ckpt", name), log))
            peak = vitc.memory_stats()["peak_bytes"]
            point = evaluate_point(model, data, shots=args.shots, seeds=args.fewshot_seeds)
            shutil.rmtree(os.path.join(args.out, "optimizers", "ckpt", name), ignore_errors=True)
            _remove_if_empty(os.path.join(args.out, "optimizers", "ckpt"))
            return dict(point, optimizer=name, state_bytes=opt.state_bytes(),
                        param_bytes=4 * model.num_parameters(), peak_bytes=peak, live_before=live0,
                        step_time_s=float(np.sum(hist["train_time"]) / (args.epochs * spe)),
                        history={"test_accuracy": hist["test_accuracy"], "train_loss": hist["train_loss"]})
        cfg = {"optimizer": name, "size": args.size, "epochs": args.epochs, "chunk": args.chunk,
               "batch": args.batch_size, "lr": args.lr, "patch": args.patch, "wd": [args.wd_head, args.wd_body]}
        rows.append(cached(os.path.join(args.out, "optimizers", "points", f"{name}.json"), cfg, measure))
        r = rows[-1]
        print(f"  optimizers {name:10s}: upstream err {r['upstream_error']:.3f}, state {r['state_bytes']} B, "
              f"peak {r['peak_bytes'] / 2**20:.1f} MiB, {1e3 * r['step_time_s']:.0f} ms/step", flush=True)
    return {"size": args.size, "epochs": args.epochs, "rows": rows, "trace": bf16_second_moment_trace()}


def bf16_second_moment_trace(n=256, steps_high=300, steps_low=3000, drop=10.0, seed=0):
    """Why a bf16 second moment fails: Adam's v on ``n`` parameters fed gradients of scale 1 for
    ``steps_high`` steps, then of scale 1/``drop``; v stored in float32 vs bfloat16 (lr 0, so only
    the state moves). Returns the mean v per step for both and the exact float64 EMA."""
    rng = np.random.default_rng(seed)
    out = {"steps_high": steps_high, "drop": drop}
    g_all = rng.standard_normal((steps_high + steps_low, n)).astype(np.float32)
    g_all[steps_high:] /= drop
    for key, dtype in (("f32", None), ("bf16", vitc.bfloat16)):
        p = vitc.nn.Parameter(vitc.zeros(n))
        opt = optim.Adam([p], lr=0.0, nu_dtype=dtype)
        trace = []
        for g in g_all:
            opt.zero_grad()
            (p * vitc.from_numpy(g)).sum().backward()  # the gradient is g
            opt.step()
            v = opt.state[p]["exp_avg_sq"]
            trace.append(float(np.mean(np.asarray(v.float().numpy() if hasattr(v, "float") else v.numpy(),
                                                  dtype=np.float64))))
        out[key] = trace
    exact, v = [], np.zeros(n)
    for g in g_all.astype(np.float64):
        v = 0.999 * v + 0.001 * g * g
        exact.append(float(v.mean()))
    out["exact"] = exact
    return out


def rsqrt_vs_linear(args, data, tracker):
    """One rsqrt run with cooldown branches against separate linear-decay runs of the same lengths (P §3.5,
    Fig. 6), and what each protocol costs in training FLOPs."""
    rsqrt = _cooled_runs("rsqrt-vs-linear", args.size, args.budgets, args, data, tracker)
    spe = args.chunk // args.batch_size
    linear = []
    for e in sorted(set(args.budgets)):
        def run(e=e):
            model = make_model(args.size, data.num_classes, args.patch)
            opt = make_optimizer(model, "adam-f32", args.lr, args.wd_head, args.wd_body)
            ck = os.path.join(args.out, "rsqrt-vs-linear", "ckpt", f"linear-{e}")
            hist, _ = tracker.run(f"linear-{args.size}-{e}", {"schedule": "linear", "epochs": e},
                                  lambda log: run_fit(model, opt, _linear(opt, args, e * spe), data, args, e, ck, log))
            shutil.rmtree(ck, ignore_errors=True)
            _remove_if_empty(os.path.dirname(ck))
            images = e * spe * args.batch_size
            return dict(evaluate_point(model, data, shots=args.shots, seeds=args.fewshot_seeds), images_seen=images,
                        flops=train_flops(model, images), history={"test_accuracy": hist["test_accuracy"],
                                                                   "lr": hist["lr"]})
        cfg = {"size": args.size, "epochs": e, "chunk": args.chunk, "batch": args.batch_size, "lr": args.lr,
               "warmup": args.warmup, "patch": args.patch, "schedule": "linear"}
        linear.append(cached(os.path.join(args.out, "rsqrt-vs-linear", "points", f"linear_e{e}.json"), cfg, run))
        print(f"  linear {e:3d} epochs: upstream err {linear[-1]['upstream_error']:.3f}", flush=True)
    per_image = rsqrt[0]["flops"] / rsqrt[0]["images_seen"]
    longest = max(args.budgets)
    rsqrt_epochs = longest + sum(p["extra_epochs"] for p in rsqrt)
    return {"size": args.size, "budgets": sorted(set(args.budgets)), "rsqrt": rsqrt, "linear": linear,
            "cost_flops": {"rsqrt_with_branches": per_image * rsqrt_epochs * args.chunk,
                           "separate_linear_runs": per_image * sum(set(args.budgets)) * args.chunk}}
