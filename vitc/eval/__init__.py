"""vitc.eval: evaluations of trained models beyond accuracy (few-shot linear transfer)."""
from .fewshot import extract_features, fewshot_accuracy, fewshot_evaluate, ridge_fewshot_fit

__all__ = ["extract_features", "fewshot_accuracy", "fewshot_evaluate", "ridge_fewshot_fit"]
