"""`flipgate predict MODEL DATA OUT`: a model's predictions table on a data file, the table the gate reads.

MODEL is any model folder the pipeline writes (an HF classifier, a Gated Fusion folder: whatever
`models.pyfunc.load_any` loads) or a registered version, `models:/<name>@<alias>` or `models:/<name>/<version>`
(downloaded from the tracking store: MLFLOW_TRACKING_URI, else the project's sqlite file). DATA is a
jsonl, csv or parquet file with columns id, text and label: the gate compares predictions with gold
labels, so the label is required. A label is an integer class id, or a class name the model's
flipgate.json lists (its `labels`, as the pipeline saves them). OUT is the predictions parquet (id, label,
pred, logits), written atomically.

The predictions are those the pipeline's own stages write for the same model and texts: one call of the
model's `predict_logits`, in the same batches, on the same device choice.

With --spark (pyspark is an optional extra: pip install 'flipgate[spark]'), the model is scored through
`mlflow.pyfunc.spark_udf` and OUT is a folder (or an object-store URL) of parquet part files keyed by id,
the partitioned dataset `flipgate gate` reads; DATA may then also be a folder or URL Spark reads. The
predictions equal the plain ones (same ids and preds, logits within 1e-5: batches are formed per Spark
partition). See flipgate.spark.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.argtypes import positive_int
from flipgate.errors import FlipgateError, UsageError

log = logging.getLogger(__name__)

DATA_COLUMNS = ("id", "text", "label")
DEFAULT_MAX_LENGTH = 128  # models.pyfunc's; kept here so `--help` imports no MLflow
DEFAULT_BATCH_SIZE = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    p.add_argument("model", metavar="MODEL", help="a model folder, or models:/<name>@<alias> or models:/<name>/<version>")
    p.add_argument("data", metavar="DATA", help="a jsonl, csv or parquet file with columns id, text, label")
    p.add_argument("out", metavar="OUT", help="the predictions .parquet to write (with --spark: a folder or URL)")
    p.add_argument("--max-length", type=int, metavar="N",
                   help=f"tokens per text (default: the registered model's, else {DEFAULT_MAX_LENGTH})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N", help="texts per batch")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, else cpu), cpu, cuda, ...")
    spark = p.add_argument_group("Spark (pip install 'flipgate[spark]')")
    spark.add_argument("--spark", action="store_true",
                       help="score through mlflow.pyfunc.spark_udf and write OUT as parquet part files keyed by id")
    spark.add_argument("--partitions", type=positive_int, metavar="N",
                       help="part files (and scoring tasks) with --spark (default: Spark's default parallelism)")
    spark.add_argument("--spark-master", metavar="URL",
                       help="master of the Spark session started here (default local[*]; a running session is used as is)")


def run(args: argparse.Namespace) -> int:
    if args.spark:
        return run_spark(args)
    for flag, value in (("--partitions", args.partitions), ("--spark-master", args.spark_master)):
        if value is not None:
            raise UsageError(f"{flag} needs --spark")
    start = time.perf_counter()
    args.data, out_text, args.out = Path(args.data), args.out, Path(args.out)
    check_out(args.out, out_text)
    examples = read_examples(args.data)
    with tempfile.TemporaryDirectory(prefix="flipgate-predict-") as tmp:
        folder, config = resolve_model(args.model, tmp)
        table = predict_table(folder, examples, max_length=args.max_length or config.get("max_length"),
                              batch_size=args.batch_size, device=args.device)
    write_table(table, args.out)
    rows = len(table)
    seconds = time.perf_counter() - start
    print(f"flipgate predict: {rows:,} predictions in {seconds:.1f} s ({rows / max(seconds, 1e-9):.1f}/s) -> {args.out}")
    return 0


def run_spark(args: argparse.Namespace) -> int:
    """--spark: the same checks and model, scored by Spark (flipgate.spark); OUT is a folder or URL."""
    from flipgate import spark

    start = time.perf_counter()
    spark.require_pyspark()
    spark.check_refs(args.data, args.out)
    with tempfile.TemporaryDirectory(prefix="flipgate-predict-spark-") as tmp:
        folder, config = resolve_model(args.model, tmp)
        done = spark.predict(folder, args.data, args.out, columns=DATA_COLUMNS, labels=model_labels(folder),
                             max_length=args.max_length or config.get("max_length") or DEFAULT_MAX_LENGTH,
                             batch_size=args.batch_size, device=args.device, partitions=args.partitions,
                             master=args.spark_master, tmp=tmp)
    seconds = time.perf_counter() - start
    print(f"flipgate predict --spark: {done.rows:,} predictions in {seconds:.1f} s ({done.rows / max(seconds, 1e-9):.1f}/s; "
          f"pyfunc and Spark start {done.start_s:.1f} s, checks {done.checks_s:.1f} s, scoring and writing "
          f"{done.scoring_s:.1f} s) -> {args.out} ({done.parts} part file(s))")
    return 0


def resolve_model(ref: str, tmp: str | Path) -> tuple[Path, dict]:
    """(a local model folder, the model_config it was registered with). A models:/ reference is
    downloaded under `tmp`; a folder is checked to be a model folder. Raises FlipgateError otherwise."""
    if ref.startswith("models:/"):
        from flipgate.gate.registry import download_model

        return download_model(ref, tmp)
    if ref.startswith("runs:/") or "://" in ref:
        raise FlipgateError(f"{ref}: only a model folder, models:/<name>@<alias> or models:/<name>/<version>")
    folder = Path(ref)
    if not folder.exists():
        raise FlipgateError(f"{folder}: model folder not found")
    if not folder.is_dir():
        raise FlipgateError(f"{folder}: is a file; MODEL is a model folder (with config.json or flipgate.json)")
    from flipgate.models.pyfunc import model_kind

    model_kind(folder)  # raises for a folder that is not a model
    return folder, {}


def read_examples(path: Path) -> pd.DataFrame:
    """id (text), text, label from a jsonl, csv or parquet file; labels as they are in the file (integers
    or names: `class_ids` maps them). Raises FlipgateError naming the file for a missing file or column,
    an unreadable file, rows without an id, text or label, and duplicate ids."""
    from flipgate.predictions import duplicate_message, text_ids

    if not path.is_file():
        raise FlipgateError(f"{path}: {'is a folder, not a data file' if path.is_dir() else 'data file not found'}")
    df = _read(path)
    missing = [c for c in DATA_COLUMNS if c not in df.columns]
    if missing:
        raise FlipgateError(f"{path}: missing column(s) {missing}; flipgate predict needs {list(DATA_COLUMNS)} "
                            f"(the gate compares predictions with gold labels) (found {list(df.columns)[:10]})")
    ids = text_ids(df["id"], path)
    for col, values in (("id", ids), ("text", df["text"]), ("label", df["label"])):
        absent = values.isna().to_numpy() | (values.astype("string") == "").fillna(True).to_numpy(dtype=bool)
        if absent.any():
            raise FlipgateError(f"{path}: {int(absent.sum()):,} row(s) have no {col} (first at row {int(absent.argmax())})")
    dups = ids[ids.duplicated()]
    if len(dups):
        raise FlipgateError(duplicate_message(path, dups.nunique(), dups.iloc[0]))
    return pd.DataFrame({"id": ids, "text": df["text"].astype(str), "label": df["label"]})


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[""])
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype={"id": object})
    except Exception as exc:  # parsers raise many types
        raise FlipgateError(f"{path}: cannot read it as {suffix[1:]} ({type(exc).__name__}: {exc})") from exc
    raise FlipgateError(f"{path}: unknown format {suffix!r}; use .jsonl, .csv or .parquet")


def class_ids(labels: pd.Series, names: list[str] | None, where: object) -> np.ndarray:
    """Labels as int64 class ids: integers as they are; names by their index in `names` (the model's
    labels). Raises FlipgateError naming `where` for a name the model does not know."""
    if pd.api.types.is_integer_dtype(labels):
        return labels.to_numpy(np.int64)
    text = labels.astype(str)
    if names:
        index = {str(n): i for i, n in enumerate(names)}
        unknown = sorted(set(text) - set(index))
        if not unknown:
            return text.map(index).to_numpy(np.int64)
        raise FlipgateError(f"{where}: {len(unknown)} label(s) the model does not know, e.g. {unknown[0]!r}; "
                            f"its classes are {list(index)[:10]}")
    try:
        return text.astype(np.int64).to_numpy()
    except ValueError:
        raise FlipgateError(f"{where}: labels are names (e.g. {text.iloc[0]!r}) but the model lists no class "
                            "names (flipgate.json `labels`); write integer class ids") from None


def model_labels(folder: Path) -> list[str] | None:
    """The class names a model folder lists in flipgate.json (`labels`), if any."""
    import json

    manifest = folder / "flipgate.json"
    if manifest.is_file():
        labels = json.loads(manifest.read_text()).get("labels")
        return [str(x) for x in labels] if isinstance(labels, list) else None
    return None


def predict_table(folder: Path, examples: pd.DataFrame, max_length: int | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto") -> pd.DataFrame:
    """The predictions table (id, label, pred, logits) of the model folder on `examples`."""
    from flipgate.models.pyfunc import load_any
    from flipgate.predictions import predictions_frame

    labels = class_ids(examples["label"], model_labels(folder), "label column")
    predictor = load_any(folder, max_length=max_length or DEFAULT_MAX_LENGTH, batch_size=batch_size, device=device)
    logits = predictor.predict_logits(examples["text"].tolist())
    return predictions_frame(examples["id"], labels, logits)


def check_out(out: Path, text: str | None = None) -> None:
    """Refuse, before any work, an OUT that cannot be written: it must end in .parquet and not be a folder
    (`text`: OUT as typed, whose trailing slash a Path drops)."""
    if out.is_dir() or (text or str(out)).endswith("/"):
        raise FlipgateError(f"{out}: is a folder; name a file, e.g. {out / 'regression.parquet'}")
    if out.suffix.lower() != ".parquet":
        raise FlipgateError(f"{out}: OUT is a .parquet file (the predictions table keeps its logits)")


def write_table(table: pd.DataFrame, out: Path) -> None:
    """The predictions parquet, atomically."""
    from flipgate.io import write_parquet

    check_out(out)
    write_parquet(table, out)
