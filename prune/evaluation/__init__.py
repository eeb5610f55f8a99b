"""Measurement: what a model costs (:mod:`~prune.evaluation.cost`), the attribution methods
(:mod:`~prune.evaluation.methods`), how faithful their explanations are (feature removal, pixel
flipping, GAE, ROAR) and the figures of both.

Plain PyTorch and matplotlib: nothing here imports ``prune.run``, Lightning or Hydra.
"""
