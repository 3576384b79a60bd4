"""vitc.experiments: reproductions of the source articles' experiments, one module each, runnable
with ``python -m vitc.experiments.<name>``.

deit: seed 001 (a small DeiT without, with soft and with hard distillation from a ResNet teacher, with
DeiT's training recipe, on Fashion-MNIST).
"""
