"""python -m vitc.experiments.over_smoothing: seed 000 §22's claims on Fashion-MNIST — do a plain ViT's
patch tokens grow alike with depth, do the three losses against over-smoothing (Gong et al., arXiv
2104.12753: cosine penalty, patch contrastive, patch mixing) lower that similarity in every layer,
and do they let a larger drop-path rate train well? Plus a DeepViT re-attention arm at the deep
setting, so one table shows both seeds' views of the same problem (tokens alike, seed 000; attention
maps alike, seed 002).

Arms: for each depth in --depths and drop-path rate in --drop-paths, a ViT (patch 7, width --dim,
--heads heads, MLP 2·dim, class token) trained with Adam for --epochs on --subset training images
with: base (cross-entropy), +cos, +cons, +mix, all (each loss weight 1.0). base and all run with
every seed of --seeds, the others with the first seed. At the largest depth, re-attention (base loss)
runs at each drop-path rate. Every run records, per epoch, the token similarity and attention
spread of each block from the epoch's last training forward (vitc.diagnostics.OverSmoothingLog, no
second forward) and, at the end, both metrics and the attention-collapse metric on --probe test images.

Resumable: each finished run is stored in --out/runs/<name>.json and skipped when the command is run
again. Tracked in MLflow (one run per arm) unless --no-mlflow. Writes results.json, results.md and the
figures (similarity_vs_layer.png, spread_vs_layer.png, accuracy.png, collapse_vs_similarity.png).

Example (the committed reduced run, docs/results/over_smoothing/):
    python -m vitc.experiments.over_smoothing --out /tmp/os_run
"""
from .cli import build_parser, main
from .runs import ARMS, run_one

__all__ = ["main", "build_parser", "run_one", "ARMS"]
