"""Wall time and peak memory of `flipgate gate` over partitioned parquet datasets (the streaming path).

Writes a baseline and a candidate dataset of N rows in P files each to a temp folder: the baseline's file
k holds ids k*N/P .. (k+1)*N/P, the candidate's file k holds every P-th id from k, shuffled, so no file of
one side matches a file of the other and the join does real work. Labels and predictions are a pure
function of the id (3 classes; baseline ~90% right, candidate fixes ~15% of its errors and breaks ~0.45% of
its right answers), so the expected flip counts are computed here without the gate and checked against
its --json output. Each run is a fresh `flipgate gate` process; its peak RSS comes from wait4.

    nice -n 19 .venv/bin/python benchmarks/bench_gate_stream.py --rows 10000000 --parts 100 --compare
    nice -n 19 .venv/bin/python benchmarks/bench_gate_stream.py --rows 100000000 --parts 1000

--compare also writes both sides as single files and runs the in-memory path on them: the verdict and
counts must be the same. The goal (issue 16): 100M rows in 1,000 partitions decided with peak RSS under
2 GB and in under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from flipgate.metrics.table import FlipTable  # noqa: E402

CLASSES = 3


def outcomes(i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, baseline pred, candidate pred) of ids numbered i: splitmix64 of i, cut into fields."""
    x = i.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    label = (x % np.uint64(CLASSES)).astype(np.int64)
    u = [((x >> np.uint64(s)) & np.uint64(0xFFFF)).astype(np.int64) for s in (8, 24, 40)]
    wrong = (label + 1) % CLASSES
    base = np.where(u[0] < 0.90 * 65536, label, wrong)
    cand = np.where((base != label) & (u[1] < 0.15 * 65536), label, base)
    cand = np.where((base == label) & (u[2] < 0.005 * 65536), wrong, cand)
    return label, base, cand


def id_strings(i: np.ndarray) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(i), pa.string()), 10, "0")
    return pc.binary_join_element_wise("reg-", digits, "")


def part(i: np.ndarray, side: int) -> pa.Table:
    label, base, cand = outcomes(i)
    return pa.table({"id": id_strings(i), "label": label, "pred": (base, cand)[side]})


def write_datasets(rows: int, parts: int, folder: Path, single_files: bool) -> tuple[FlipTable, dict[str, str]]:
    """Both datasets (and single files with --compare); the flip table they must give."""
    rng = np.random.default_rng(0)
    paths = {"baseline": folder / "baseline", "candidate": folder / "candidate"}
    for p in paths.values():
        p.mkdir()
    expected = FlipTable.empty()
    bounds = np.linspace(0, rows, parts + 1).astype(np.int64)
    writers = {}
    if single_files:
        schema = part(np.arange(1), 0).schema
        writers = {s: pq.ParquetWriter(folder / f"{s}.parquet", schema) for s in ("baseline", "candidate")}
    for k in range(parts):
        i = np.arange(bounds[k], bounds[k + 1])
        label, base, cand = outcomes(i)
        expected = expected + FlipTable.from_arrays(label, base, cand)
        pq.write_table(part(i, 0), paths["baseline"] / f"part-{k:05d}.parquet")
        j = rng.permutation(np.arange(k, rows, parts))
        pq.write_table(part(j, 1), paths["candidate"] / f"part-{k:05d}.parquet")
        if writers:
            writers["baseline"].write_table(part(i, 0))
            writers["candidate"].write_table(part(rng.permutation(i), 1))
    for w in writers.values():
        w.close()
    out = {s: str(p) for s, p in paths.items()}
    if single_files:
        out |= {f"{s} file": str(folder / f"{s}.parquet") for s in ("baseline", "candidate")}
    return expected, out


def run_gate(baseline: str, candidate: str, out: Path, extra: list[str]) -> dict[str, object]:
    """One `flipgate gate` process: wall time, peak RSS (wait4), exit code and its decision."""
    cmd = ["nice", "-n", "19", sys.executable, "-m", "flipgate.cli", "gate", "--baseline", baseline,
           "--candidate", candidate, "--json", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    rc = os.waitstatus_to_exitcode(status)
    if rc not in (0, 1, 2):
        raise SystemExit(f"gate failed ({rc}): {err}")
    return {"command": " ".join(cmd[3:]), "seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "rc": rc,
            "decision": json.loads(out.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--parts", type=int, default=100)
    parser.add_argument("--compare", action="store_true", help="also run the in-memory path on single files")
    parser.add_argument("--tmp", type=Path, help="where the datasets and the spill go (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the datasets (their folder is printed)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flipgate-bench-stream-", dir=args.tmp))
    try:
        start = time.perf_counter()
        expected, paths = write_datasets(args.rows, args.parts, folder, args.compare)
        size = sum(f.stat().st_size for f in folder.rglob("*.parquet")) / 2**30
        print(f"wrote {args.rows:,} rows x 2 sides in {args.parts:,} files each ({size:.2f} GiB) in "
              f"{time.perf_counter() - start:.0f} s under {folder}")
        print(f"host: {platform.machine()}, {os.cpu_count()} CPU cores, python {platform.python_version()}, "
              f"pyarrow {pa.__version__}; load average {os.getloadavg()[0]:.1f}")
        spill = ["--spill-dir", str(folder)]
        streamed = run_gate(paths["baseline"], paths["candidate"], folder / "stream.json", spill)
        report("streamed", streamed)
        assert_counts(streamed["decision"], expected)
        if args.compare:
            whole = run_gate(paths["baseline file"], paths["candidate file"], folder / "whole.json", [])
            report("in memory", whole)
            a, b = streamed["decision"], whole["decision"]
            same = (a["verdict"], a["counts"], a["checks"]) == (b["verdict"], b["counts"], b["checks"])
            print(f"same verdict, counts and checks as the in-memory path: {same}")
            if not same:
                raise SystemExit("the streamed decision differs from the in-memory one")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def report(name: str, r: dict[str, object]) -> None:
    d = r["decision"]
    c = d["counts"]
    print(f"{name}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, verdict {d['verdict']} "
          f"(exit {r['rc']}), n={c['n']:,}, negative flips {c['negative_flips']:,}, NFR {c['nfr']:.5f}")
    print(f"  command: {r['command']}")


def assert_counts(decision: dict, expected: FlipTable) -> None:
    want = expected.counts().as_dict()
    if decision["counts"] != want:
        raise SystemExit(f"counts differ from the generator's: {decision['counts']} vs {want}")
    print("counts equal the generator's (computed without the gate)")


if __name__ == "__main__":
    main()
