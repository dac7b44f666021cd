"""Flip metrics from pooled counts. Imports no MLflow, DVC or Great Expectations."""
