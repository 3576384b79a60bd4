"""PyTorch-named functions over the C op table, one module per op family (csrc/ops/<family>.c)."""
