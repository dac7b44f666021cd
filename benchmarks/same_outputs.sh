#!/usr/bin/env bash
# Do two revisions of flipgate write the same pipeline outputs? For a refactor that must change nothing.
#   bash benchmarks/same_outputs.sh REV_A REV_B [WORK_DIR]      (e.g. 00f5357 HEAD; needs `make install`)
# Runs `dvc repro` for each revision in a git worktree under WORK_DIR (default: a temp folder) on the
# embedded data with a shortened schedule (2 fixed epochs, splits 300/150/300/500, gate_epochs 3; about
# 10 minutes each on 2 cores), then compares every predictions parquet under seeds/ and candidate/ byte for
# byte, and metrics.json (less its timings and timestamp) and gate.json. Exits 1 when anything differs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
a=$1; b=$2; work=${3:-$(mktemp -d)}
export PATH=$ROOT/.venv/bin:$PATH MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  TOKENIZERS_PARALLELISM=false CI=true
run() {
  local rev=$1 out=$2
  rm -rf "$out"; git -C "$ROOT" worktree prune
  git -C "$ROOT" worktree add -q --detach "$out/repo" "$rev"
  cd "$out/repo"
  python - <<'PY'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["update"].update(n_old=300, n_new=150, n_dev=300, n_regression=500)
for s in ("train_old", "train_target", "train_new", "gated_fusion"):
    p[s]["epochs"] = 2
    for k in ("max_epochs", "patience"):
        p[s].pop(k, None)
p["gated_fusion"]["gate_epochs"] = 3
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
  local start=$SECONDS
  PYTHONPATH=$PWD/src dvc repro > "$out/repro.log" 2>&1 || { tail -30 "$out/repro.log"; exit 1; }
  echo "$rev: dvc repro in $((SECONDS - start)) s ($out/repro.log)"
  find seeds candidate -name "*.parquet" | sort | while read -r f; do echo "$(sha256sum < "$f" | cut -c1-16) $f"; done > "$out/hashes.txt"
  python - "$out" <<'PY'
import json, sys
m = json.load(open("seeds/0/reports/metrics.json"))
m.pop("wall_time_s", None)
m.get("provenance", {}).pop("written_at", None)
json.dump(m, open(f"{sys.argv[1]}/metrics.json", "w"), indent=1, sort_keys=True, default=str)
g = json.load(open("reports/gate.json"))
g.pop("elapsed_s", None)
json.dump(g, open(f"{sys.argv[1]}/gate.json", "w"), indent=1, sort_keys=True, default=str)
PY
  cd "$ROOT"
}
run "$a" "$work/a"
run "$b" "$work/b"
same=$(join -j 2 <(sort -k2 "$work/a/hashes.txt") <(sort -k2 "$work/b/hashes.txt") | awk '$2 == $3' | wc -l)
echo "predictions files: $(wc -l < "$work/a/hashes.txt") in $a, $(wc -l < "$work/b/hashes.txt") in $b, $same byte-identical"
status=0
join -j 2 -a 1 -a 2 -e missing -o 0,1.1,2.1 <(sort -k2 "$work/a/hashes.txt") <(sort -k2 "$work/b/hashes.txt") \
  | awk '$2 != $3 {print "differs:", $1; bad=1} END {exit bad}' || status=1
for f in metrics.json gate.json; do
  if diff -q "$work/a/$f" "$work/b/$f" > /dev/null; then echo "$f: identical"; else echo "$f: differs"; diff "$work/a/$f" "$work/b/$f" | head -20; status=1; fi
done
git -C "$ROOT" worktree remove --force "$work/a/repo"; git -C "$ROOT" worktree remove --force "$work/b/repo"
exit $status
