"""The pipeline's stages as library calls, one module per dvc.yaml stage that composes several parts.

A stage script (stages/<stage>.py) reads its params and paths and makes one call here; the module puts the
library together (models, mitigation, metrics, report, gate) and writes the stage's outputs. This is the
edge: nothing else in flipgate imports it, so it may draw, write and load models where the core may not.
"""
