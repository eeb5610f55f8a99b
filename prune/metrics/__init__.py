"""Measurements: compute cost, feature removal, attribution scores."""
