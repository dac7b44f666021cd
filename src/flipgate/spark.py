"""`flipgate predict --spark MODEL DATA OUT`: the predictions table scored by Spark, written as parquet part files.

The model folder (or the registered version's folder) is saved as the flipgate pyfunc
(`models.pyfunc.save_model`, with max_length, batch size and device in its model_config) to a temp
folder, and scored through `mlflow.pyfunc.spark_udf` (env_manager "local": the executors use the
installed flipgate, as the plain path does); the UDF returns the pyfunc's two columns, `pred` (int64)
and `logits` (array<float>). DATA is read by Spark (a jsonl, csv or parquet file, a folder of parquet
files, or any URL Spark reads), checked as the plain path checks it (columns, missing values,
duplicate ids, class names through the model's labels), repartitioned by id into `--partitions` parts
(default: Spark's default parallelism) and written as one folder of parquet part files (id, label,
pred, logits), each part holding the ids of one hash range, sorted by id: the partitioned dataset
`flipgate gate` streams.

OUT is a folder. A local one (under a local master) is written beside it and renamed into place, so
it is whole or absent; an existing folder is replaced only when it is empty or a Spark output (holds
`_SUCCESS`). A URL (s3a://, abfss://, gs://, dbfs:/) is written with Spark's overwrite.

pyspark is an optional extra (`pip install 'flipgate[spark]'`); without it `--spark` exits 64 saying so.
A Spark session that is already running (spark-submit, a Databricks notebook or job) is used as it is;
else a local one is started (all cores) and stopped when done. Each UDF task runs torch with
`spark.task.cpus` threads (1 by default), so N concurrent tasks share N cores without oversubscribing.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from flipgate.errors import FlipgateError, UsageError

log = logging.getLogger(__name__)

INSTALL = "pip install 'flipgate[spark]'"
RESULT_TYPE = "pred long, logits array<float>"  # the pyfunc's output columns (models.pyfunc._signature)
FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def require_pyspark() -> None:
    """Raise UsageError (exit 64) saying how to install pyspark when it is not installed."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise UsageError(f"--spark needs pyspark, which is not installed; install it with {INSTALL} "
                         "(Spark also needs Java 17 or newer on PATH or in JAVA_HOME)") from None


@dataclass(frozen=True)
class Scored:
    """What `predict` did: rows written, part files, and where its time went (seconds)."""

    rows: int
    parts: int
    start_s: float  # the pyfunc saved and the Spark session started
    checks_s: float  # DATA read and checked
    scoring_s: float  # scored and written


def check_refs(data: str, out: str) -> None:
    """Refuse, before the model is loaded, a DATA that is missing or of an unknown format, and OUT = DATA."""
    _check_data_ref(data)
    if _same_place(data, out):
        raise FlipgateError(f"{out}: OUT is DATA; name another folder for the predictions")


def predict(folder: Path, data: str, out: str, *, columns: tuple[str, ...], labels: list[str] | None,
            max_length: int, batch_size: int, device: str, partitions: int | None = None,
            master: str | None = None, tmp: str | Path) -> Scored:
    """Score DATA with the model folder through Spark and write OUT (see the module's doc). `labels`: the
    model's class names, for DATA's label names; `tmp`: a folder for the pyfunc, kept until the end."""
    require_pyspark()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # copying the model to temp folders
    t0 = time.perf_counter()
    pyfunc = save_pyfunc(folder, Path(tmp) / "pyfunc", max_length=max_length, batch_size=batch_size, device=device)
    spark, started = session(master)
    try:
        t1 = time.perf_counter()
        local = _is_local_out(spark, out)
        check_out(spark, out, local)
        examples, rows = read_examples(spark, data, labels, columns)
        t2 = time.perf_counter()
        parts = partitions or spark.sparkContext.defaultParallelism
        write(score(spark, examples, pyfunc, parts), out, local)
        t3 = time.perf_counter()
    finally:
        if started:
            spark.stop()
    return Scored(rows, parts, t1 - t0, t2 - t1, t3 - t2)


# --- the model and the session ----------------------------------------------------------------------

def save_pyfunc(folder: Path, path: Path, **model_config) -> Path:
    """The model folder as the flipgate pyfunc at `path`, with its options baked in: on a cluster MLflow
    ships the pyfunc to the executors and loads it there without spark_udf's model_config."""
    from flipgate.models.pyfunc import save_model

    return save_model(folder, path, **model_config)


def session(master: str | None = None):
    """(the SparkSession, whether it was started here). A running session is used as it is (its master
    and settings are the caller's); a new one is local[*] unless `master` says otherwise, with Spark's
    console progress bar off and its python workers on this interpreter."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        if master and active.sparkContext.master != master:
            raise UsageError(f"--spark-master {master}: a Spark session is already running on "
                             f"{active.sparkContext.master}; leave --spark-master out to use it")
        return active, False
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if not master or master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a local session listens on loopback only
    builder = (SparkSession.builder.appName("flipgate predict")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.session.timeZone", "UTC"))
    if master:
        builder = builder.master(master)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # PySparkRuntimeError JAVA_GATEWAY_EXITED and the like
        raise FlipgateError(f"Spark could not start ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                            "it needs Java 17 or newer on PATH or in JAVA_HOME") from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark, True


# --- reading and checking DATA ----------------------------------------------------------------------

def _check_data_ref(data: str) -> None:
    if "://" in data or data.startswith("dbfs:/"):
        return  # Spark's to open; its errors are reported naming it
    path = Path(data)
    if not path.exists():
        raise FlipgateError(f"{path}: data file not found")
    if path.is_file() and path.suffix.lower() not in FORMATS:
        raise FlipgateError(f"{path}: unknown format {path.suffix.lower()!r}; use .jsonl, .csv or .parquet "
                            "(or a folder of .parquet files)")


def _format(data: str) -> str:
    suffix = Path(data.rstrip("/")).suffix.lower()
    return FORMATS.get(suffix, "parquet")  # a folder (or URL) of parquet files


def read_examples(spark, data: str, names: list[str] | None, columns: tuple[str, ...] = ("id", "text", "label")):
    """(a DataFrame id string, text string, label long; its row count) from DATA, refused as the plain
    path refuses it: missing columns, rows without an id, text or label, float or nested ids, duplicate
    ids, labels the model does not know. Raises FlipgateError naming DATA. `columns`: score.DATA_COLUMNS
    (passed in: score imports this module)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from flipgate.predictions import duplicate_message

    fmt = _format(data)
    try:
        reader = spark.read.option("mode", "FAILFAST")
        if fmt == "csv":  # as pandas writes it: quotes doubled, newlines inside quoted fields
            reader = reader.options(header=True, multiLine=True, escape='"', inferSchema=False)
        df = getattr(reader, fmt)(data)
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise FlipgateError(f"{data}: missing column(s) {missing}; flipgate predict needs {list(columns)} "
                                f"(the gate compares predictions with gold labels) (found {df.columns[:10]})")
        types = {f.name: f.dataType for f in df.schema.fields}
        id_type = types["id"]
        if not isinstance(id_type, (T.StringType, T.IntegralType, T.BinaryType)):
            raise FlipgateError(f"{data}: column 'id' holds {id_type.simpleString()}; ids must be text or "
                                "integers (a missing id turns an integer column into floats)")
        label_type = types["label"]
        if not isinstance(label_type, (T.StringType, T.IntegralType)):
            raise FlipgateError(f"{data}: column 'label' holds {label_type.simpleString()}; labels are integer "
                                "class ids or class names")
        df = df.select(F.col("id").cast("string").alias("id"), F.col("text").cast("string").alias("text"),
                       F.col("label"))
        summary = _summary(df, isinstance(label_type, T.StringType))
        for c in columns:
            if summary[c]:
                raise FlipgateError(f"{data}: {summary[c]:,} row(s) have no {c}")
        if summary["duplicates"]:
            raise FlipgateError(duplicate_message(data, summary["duplicates"], summary["duplicate"]))
        df = df.withColumn("label", _class_ids(df, summary["names"] or 0, names, data))
    except FlipgateError:
        raise
    except Exception as exc:  # Spark's AnalysisException, Py4JJavaError, ...: unreadable, not found
        raise FlipgateError(f"{data}: cannot read it as {'jsonl' if fmt == 'json' else fmt} "
                            f"({type(exc).__name__}: {_first_line(exc)})") from exc
    return df, int(summary["rows"])


def _summary(df, string_labels: bool):
    """One Spark job over DATA: rows; rows without an id, a text or a label; ids held more than once
    (how many, the least of them); labels that are not integers (names)."""
    from pyspark.sql import functions as F

    def absent(c: str):
        return (F.col(c).isNull() | (F.col(c).cast("string") == "")).cast("long")

    named = (~F.trim(F.col("label")).rlike(r"^[+-]?\d+$")).cast("long") if string_labels else F.lit(0)
    per_id = df.groupBy("id").agg(F.count(F.lit(1)).alias("n"), F.sum(absent("text")).alias("text"),
                                  F.sum(absent("label")).alias("label"), F.sum(named).alias("names"))
    no_id = F.col("id").isNull() | (F.col("id") == "")
    repeated = (F.col("n") > 1) & ~no_id
    return per_id.agg(
        F.coalesce(F.sum("n"), F.lit(0)).alias("rows"), F.sum(F.when(no_id, F.col("n")).otherwise(0)).alias("id"),
        F.sum("text").alias("text"), F.sum("label").alias("label"), F.sum("names").alias("names"),
        F.sum(repeated.cast("long")).alias("duplicates"), F.min(F.when(repeated, F.col("id"))).alias("duplicate"),
    ).first()


def _class_ids(df, named: int, names: list[str] | None, data: str):
    """The label column as int64 class ids, as `score.class_ids` reads a file's labels: integers as they
    are (in a csv, text that is an integer); names by their index in the model's labels."""
    from pyspark.sql import functions as F

    if not named:
        return F.trim(F.col("label").cast("string")).cast("long")
    if not names:
        example = df.where(~F.trim(F.col("label")).rlike(r"^[+-]?\d+$")).select("label").first()[0]
        raise FlipgateError(f"{data}: labels are names (e.g. {example!r}) but the model lists no class "
                            "names (flipgate.json `labels`); write integer class ids")
    index = F.create_map(*[x for i, n in enumerate(names) for x in (F.lit(str(n)), F.lit(i).cast("long"))])
    unknown = [r[0] for r in df.where(index[F.col("label")].isNull()).select("label").distinct()
               .orderBy("label").limit(1).collect()]
    if unknown:
        count = df.where(index[F.col("label")].isNull()).select("label").distinct().count()
        raise FlipgateError(f"{data}: {count} label(s) the model does not know, e.g. {unknown[0]!r}; "
                            f"its classes are {list(map(str, names))[:10]}")
    return index[F.col("label")]


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n", 1)[0].split())
    return text[:300]


# --- scoring and writing ---------------------------------------------------------------------------

def score(spark, examples, pyfunc: Path, partitions: int):
    """id, label, pred, logits: `examples` repartitioned by id into `partitions` parts, each scored by
    the pyfunc's UDF and sorted by id."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    threads = spark.conf.get("spark.task.cpus", "1") or "1"
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    with warnings.catch_warnings(), _quiet("mlflow"):
        warnings.filterwarnings("ignore", category=FutureWarning)  # pyspark on pandas 3
        udf = mlflow.pyfunc.spark_udf(spark, str(pyfunc), result_type=RESULT_TYPE, env_manager="local",
                                      extra_env=env)
    scored = examples.repartition(partitions, "id").select("id", "label", udf(F.col("text")).alias("out"))
    return (scored.select("id", "label", F.col("out.pred").alias("pred"), F.col("out.logits").alias("logits"))
            .sortWithinPartitions("id"))


def _is_local_out(spark, out: str) -> bool:
    """OUT is a path on this machine: no scheme (or file:), under a local master."""
    if out.startswith("file:"):
        return True
    return "://" not in out and not out.startswith("dbfs:/") and spark.sparkContext.master.startswith("local")


def _local(out: str) -> Path:
    return Path(out.removeprefix("file://") if out.startswith("file://") else out.removeprefix("file:"))


def check_out(spark, out: str, local: bool) -> None:
    """Refuse, before any work, an OUT that is a file, or a folder that holds something other than a
    Spark output (it would be replaced as a whole)."""
    if local:
        path = _local(out)
        if path.exists() and not path.is_dir():
            raise FlipgateError(f"{path}: is a file; with --spark OUT is a folder (of parquet part files), "
                                f"e.g. {path.with_suffix('')}/")
        if path.is_dir() and any(path.iterdir()) and not (path / "_SUCCESS").exists():
            raise FlipgateError(f"{path}: is a folder that is not a Spark output (no _SUCCESS); it would be "
                                "replaced as a whole: name a new or empty folder")
        return
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: no Hadoop FileSystem to ask; Spark's overwrite decides
        return
    try:
        hpath = jvm.org.apache.hadoop.fs.Path(out)
        fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())
        exists, is_file = fs.exists(hpath), fs.exists(hpath) and fs.getFileStatus(hpath).isFile()
        foreign = exists and not is_file and len(fs.listStatus(hpath)) > 0 and \
            not fs.exists(jvm.org.apache.hadoop.fs.Path(hpath, "_SUCCESS"))
    except Exception as exc:  # no filesystem for the scheme, no credentials
        raise FlipgateError(f"{out}: Spark cannot open it ({type(exc).__name__}: {_first_line(exc)})") from exc
    if is_file:
        raise FlipgateError(f"{out}: is a file; with --spark OUT is a folder (of parquet part files)")
    if foreign:
        raise FlipgateError(f"{out}: is a folder that is not a Spark output (no _SUCCESS); it would be "
                            "replaced as a whole: name a new or empty folder")


def write(scored, out: str, local: bool) -> None:
    """Write the parquet part files: a local OUT beside it, then renamed into place (whole or absent)."""
    if not local:
        scored.write.mode("overwrite").parquet(out)
        return
    from flipgate.io import atomic_path

    with atomic_path(_local(out), folder=True) as target:
        scored.write.parquet(str(target.resolve()))


def _same_place(data: str, out: str) -> bool:
    if "://" in data or "://" in out:
        return data.rstrip("/") == out.rstrip("/")
    return Path(data).resolve() == Path(out).resolve()


class _quiet:
    """MLflow's warning about env_manager "local" (deliberate: the executors run the installed flipgate)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self):
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
