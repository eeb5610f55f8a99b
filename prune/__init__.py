"""lrp-prune: explain classifiers with LRP and prune them by their explanations."""

__version__ = "0.1.0"
