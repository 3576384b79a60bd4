"""Reproductions of the source documents' experiments (python -m vitc.experiments.<name>)."""
