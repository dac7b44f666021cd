"""Device and seed, decided once per process and passed down; the distributed launch (HF Accelerate).

One process (`python stages/train.py ...`, the default) never creates an Accelerator nor imports
accelerate: it runs exactly as it always has. Under `accelerate launch` with more than one process
(WORLD_SIZE > 1), `get_device` creates the one Accelerator of the process (it joins the process group:
NCCL on GPUs, gloo on CPU) and returns its device; `distributed()` then returns it, and the training loop
shards each global batch over the processes (models/train.py), predictions are gathered with
`gather_for_metrics` (models/predict.py), and only the main process writes files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sys

import numpy as np
import torch

log = logging.getLogger(__name__)

_accelerator = None  # the process's Accelerator under a multi-process launch (created by get_device)


def launched_processes() -> int:
    """How many processes the launcher started (1 without one). torchrun, and so `accelerate launch`'s
    multi-process launcher, sets WORLD_SIZE for every process."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """True for the one process that writes files, logs and saves (global rank 0); always True alone."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def _resolve(preference: str) -> torch.device:
    if preference == "auto":
        if torch.cuda.is_available():
            preference = "cuda"
        elif torch.backends.mps.is_available():
            preference = "mps"
        else:
            preference = "cpu"
    return torch.device(preference)


def get_device(preference: str = "auto") -> torch.device:
    """cuda when present (or asked for), else mps, else cpu. Under a multi-process launch: this process's
    device (cuda:<local rank>, or cpu with gloo when `preference` resolves to cpu), from its Accelerator."""
    device = _resolve(preference)
    if launched_processes() > 1:
        device = _start_accelerator(cpu=device.type != "cuda").device
        if device.type == "cpu":  # Accelerate says cpu:0; plain cpu keeps .to(device) a no-op on CPU tensors
            device = torch.device("cpu")  # (a copy under inference_mode would make buffers inference tensors)
    log.info("device: %s", device)
    return device


def _start_accelerator(cpu: bool):
    global _accelerator
    if _accelerator is None:
        from accelerate import Accelerator

        # Mixed precision stays ours (autocast below): the loop is the same with and without a launch.
        _accelerator = Accelerator(cpu=cpu, mixed_precision="no")
        log.info("distributed: process %d of %d (%s, %s)", _accelerator.process_index, _accelerator.num_processes,
                 _accelerator.distributed_type.value, torch.distributed.get_backend())
    return _accelerator


def distributed():
    """The Accelerator of a multi-process launch, else None (one process: the code paths of old).

    Created by `get_device`; called first here (a library caller that passed its own device), it follows
    the hardware: NCCL when CUDA is present, gloo otherwise."""
    if launched_processes() <= 1:
        return None
    return _start_accelerator(cpu=not torch.cuda.is_available())


def ddp(module: torch.nn.Module) -> torch.nn.Module:
    """`module` wrapped in DistributedDataParallel (gradients averaged over the processes in backward), as
    Accelerator.prepare_model wraps it, but not kept by the Accelerator: a model trained twice (Gated
    Fusion's new: its epochs, then the joint epoch) gets a fresh wrapper each time and the old one is freed.
    The wrapper shares `module`'s parameters; evaluate and save `module` itself."""
    device = next(module.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, output_device=ids[0] if ids else None)


def own_dropout_stream(seed: int, rank: int) -> None:
    """Under a launch, call once the model is wrapped (DDP has copied process 0's weights to every process):
    each process > 0 gets a torch RNG stream of its own. One process draws an independent dropout mask for
    every row of the global batch; processes seeded alike would draw the same masks for their shares, so
    row i of every share would be dropped alike. Only dropout draws from torch's RNG while training; the batches and
    Gated Fusion's gate drops come from numpy generators every process seeds alike."""
    if rank:
        torch.manual_seed(seed + 1_000_003 * rank)


def shard(idx: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, float]:
    """This process's part of a global batch `idx` (every world-th row from `rank`: rows of a batch are
    length-sorted, so each part pads to about the same width) and the weight that makes DDP's gradient
    average over the processes equal the gradient of the global batch's mean loss: mean loss of the part
    x len(part) x world / len(idx). A process with no row (a last batch smaller than world) runs one row
    at weight 0, so that every process takes part in each step's gradient all-reduce."""
    part = idx[rank::world]
    if len(part) == 0:
        return idx[:1], 0.0
    return part, len(part) * world / len(idx)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_argv(script: str, args: list[str], processes: int, cpu: bool) -> list[str]:
    """The command that re-runs `script args` as `processes` processes on this machine with
    `accelerate launch` (its torchrun launcher: `--cpu` alone would ask for mpirun; the processes pick
    gloo on CPU from base.device or the missing GPU), on a free port, the CPU's cores shared out."""
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port())]
    if cpu:
        argv += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // processes))]
    return [*argv, script, *args]


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device):
    """bf16 autocast on CUDA only; on CPU it is slower and changes numerics, so it is off."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
