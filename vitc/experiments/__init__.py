"""vitc.experiments: reproductions of the source articles' experiments, one module each, runnable
with ``python -m vitc.experiments.<name>``.

deepvit: seed 002 (plain vs re-attention ViTs at several depths on Fashion-MNIST; attention collapse).
deit: seed 001 (a small DeiT without, with soft and with hard distillation from a ResNet teacher, with
DeiT's training recipe, on Fashion-MNIST).
vit_batchnorm: seed 004 (ViT vs ViTBNFFN vs ViTBN on MNIST; fixed learning rates and a Bayesian search).
"""
