"""vitc.eval: evaluations of trained models beyond accuracy (few-shot linear transfer), training compute
of a ViT in FLOPs, and the saturating power law of error against compute (Zhai et al. 2022, §2)."""
from .fewshot import extract_features, fewshot_accuracy, fewshot_evaluate, ridge_fewshot_fit
from .flops import vit_flop_breakdown, vit_forward_flops, vit_train_flops
from .scaling_law import (PowerLawFit, bootstrap_power_law, compare_shift, fit_power_law, pareto_frontier,
                          saturating_power_law)

__all__ = ["extract_features", "fewshot_accuracy", "fewshot_evaluate", "ridge_fewshot_fit", "vit_flop_breakdown",
           "vit_forward_flops", "vit_train_flops", "PowerLawFit", "bootstrap_power_law", "compare_shift",
           "fit_power_law", "pareto_frontier", "saturating_power_law"]
