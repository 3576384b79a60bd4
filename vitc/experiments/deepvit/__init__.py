"""python -m vitc.experiments.deepvit: seed 002's question on Fashion-MNIST — does a plain ViT stop
gaining from depth as its attention maps collapse, and does re-attention help? (Zhou et al.,
arXiv 2103.11886, Figs. 1 and 3, Table 3.)

For each depth in --depths and each variant in --variants ('mhsa': plain ViT, 'reattention':
DeepViT re-attention in every block, BatchNorm over the heads) a ViT of width --dim (patch 7, 4
heads × 16, MLP 2·dim) is trained with Adam for --epochs on the first --subset training images and
evaluated on the first --test-subset test images. After training, the collapse diagnostics
(vitc.diagnostics: cross-layer attention-map similarity, the number of adjacent-block pairs above
--threshold, feature similarity to the last block) are measured on the first --probe test images.

Writes into --out (every file atomically): results.json (config, per-run history and metrics),
results.md (the tables), accuracy_vs_depth.png, collapse_vs_depth.png and, per run,
<variant>_d<depth>_{similarity,curves,head_similarity}.png.

Example (the committed reduced run, docs/results/deepvit/):
    python -m vitc.experiments.deepvit --epochs 2 --subset 6000 --test-subset 2000 --out docs/results/deepvit
"""
from .cli import build_parser, main
from .report import markdown, plots
from .runs import VARIANTS, run_one

__all__ = ["main", "build_parser", "run_one", "VARIANTS"]
