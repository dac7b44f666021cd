"""Peak memory of BCWI interpolation: old + new state dicts + the model written into (3 copies), plus
at most one tensor in flight.

Run: python benchmarks/bcwi_memory.py [--tensors 8 --mb 25]
Prints the model size, RSS before interpolating and the peak RSS during 5 alphas (MB).
"""

import argparse
import resource

import torch

from flipgate.mitigation.bcwi import interpolate_into


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak() -> None:
    """Linux: reset the process's peak RSS (VmHWM) so that only what follows is measured."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tensors", type=int, default=8)
    ap.add_argument("--mb", type=int, default=25)
    args = ap.parse_args()
    side = int((args.mb * 2**20 / 4) ** 0.5)
    model = torch.nn.Sequential(*[torch.nn.Linear(side, side, bias=False) for _ in range(args.tensors)])
    old = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    new = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    copy_mb = sum(v.numel() * v.element_size() for v in old.values()) / 2**20
    reset_peak()
    before = rss_mb()
    for alpha in (0.1, 0.3, 0.5, 0.7, 0.9):
        interpolate_into(model, old, new, alpha)
    peak = peak_mb()
    print(f"model copy {copy_mb:.0f} MB; RSS before {before:.0f} MB (3 copies + runtime); "
          f"peak during interpolation {peak:.0f} MB; growth over RSS {max(peak - before, 0):.0f} MB "
          f"(one tensor is {copy_mb / args.tensors:.0f} MB)")
    print(f"GROWTH_MB={max(peak - before, 0):.1f} TENSOR_MB={copy_mb / args.tensors:.1f} COPY_MB={copy_mb:.1f}")


if __name__ == "__main__":
    main()
