"""vitc.experiments: reproductions of the source articles' experiments, one package each, runnable
with ``python -m vitc.experiments.<name>``. Each package splits into its runs (runs.py), its tables
and figures (report.py) and its command line (cli.py); what they share (machine information, threads,
figures, MLflow tracking) is in vitc.experiments.common.

deepvit: seed 002 (plain vs re-attention ViTs at several depths on Fashion-MNIST; attention collapse).
deit: seed 001 (a small DeiT without, with soft and with hard distillation from a ResNet teacher, with
DeiT's training recipe, on Fashion-MNIST).
vit_batchnorm: seed 004 (ViT vs ViTBNFFN vs ViTBN on MNIST; fixed learning rates and a Bayesian search).
"""
