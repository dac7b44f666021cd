"""Regression mitigations: BCWI (weight interpolation), Gated Fusion, old-new ensembles.

The math here imports no MLflow, DVC or Great Expectations.
"""
