"""vitc.experiments: reproductions of the source articles' experiments, one module each, runnable
with ``python -m vitc.experiments.<name>``.

deepvit: seed 002 (plain vs re-attention ViTs at several depths on Fashion-MNIST; attention collapse).
"""
