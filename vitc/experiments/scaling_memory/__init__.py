"""python -m vitc.experiments.scaling_memory: the memory/speed sweep of Zhai et al., "Scaling Vision
Transformers" (arXiv 2106.04560 §3.6, Fig. 6) at CPU scale, with vitc.plan's prediction beside
every measurement.

For every depth × width × MLP ratio of the grid (patch 14, head width 32, no dropout) and each
setup — 'baseline' (class token, Adam f32), 'gap_bf16m' (no class token, global average pooling,
Adam with a bfloat16 first moment), 'adafactor' (GAP + vitc.optim.Adafactor) — a ViT is built and
trained for one warm-up and --repeats steps on random images: the allocator's peak over a steady
step (vitc.memory_stats) and the process's resident high-water mark are measured, with the fastest
step's time. vitc.plan predicts peak and time from the configuration alone; the calibration is
re-measured every --recalibrate-every runs so that calibration and measurement see similar load.
"Fits" = predicted (or measured) peak + the input batch within --memory-cap.

Writes into --out: runs/<setup>_d<depth>_w<width>_m<mlp>.json (one per run; a rerun keeps them),
results.json, results.md (the table and the error distribution), fits_map.png, predicted_vs_measured.png.

Example (the committed reduced run, docs/results/scaling_memory/):
    python -m vitc.experiments.scaling_memory --threads 1 --out docs/results/scaling_memory
"""
from .cli import build_parser, main
from .runs import SETUPS, grid, run_one

__all__ = ["main", "build_parser", "SETUPS", "grid", "run_one"]
