"""Errors of the LRP engine."""

from __future__ import annotations


class UnsupportedLayerError(NotImplementedError):
    """A layer or functional op for which the composite defines no LRP rule."""
