"""vitc.eval: evaluations of trained models beyond accuracy (few-shot linear transfer), training compute
of a ViT in FLOPs, and the saturating power law of error against compute (Zhai et al. 2022)."""
from .fewshot import extract_features, fewshot_accuracy, fewshot_evaluate, ridge_fewshot_fit
from .flops import vit_flop_breakdown, vit_forward_flops, vit_train_flops

__all__ = ["extract_features", "fewshot_accuracy", "fewshot_evaluate", "ridge_fewshot_fit", "vit_flop_breakdown",
           "vit_forward_flops", "vit_train_flops"]
