"""Device and seed, decided once per process and passed down."""

from __future__ import annotations

import contextlib
import logging
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def get_device(preference: str = "auto") -> torch.device:
    """cuda when present (or asked for), else mps, else cpu."""
    if preference == "auto":
        if torch.cuda.is_available():
            preference = "cuda"
        elif torch.backends.mps.is_available():
            preference = "mps"
        else:
            preference = "cpu"
    device = torch.device(preference)
    log.info("device: %s", device)
    return device


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device):
    """bf16 autocast on CUDA only; on CPU it is slower and changes numerics, so it is off."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
