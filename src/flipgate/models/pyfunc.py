"""Any flipgate classifier folder as one MLflow pyfunc: DataFrame `text` in, `pred` + `logits` out.

A model folder says what it is in `flipgate.json` ({"kind": "hf" | "gated_fusion", ...}, as
`save_classifier` and `GatedFusion.save` write it); without one, a folder holding `config.json` is an HF
save_pretrained folder ("hf"). `load_any(folder)` dispatches on the kind to a loader named in LOADERS:
"hf" is this module's, every other kind is an installed package's entry point in the group
`flipgate.model_kinds` (pyproject.toml registers "gated_fusion" -> flipgate.mitigation.gated_fusion), so
a new kind is wired by writing its loader and naming it there, not by changing the wrapper or the
registry, and this module depends on no mitigation code.

A loader returns a Predictor: `predict_logits(texts) -> float32 array (n, classes)`.
The pyfunc is logged as code (CODE_FILE, MLflow's models from code), not pickled; that file imports this
module, so the environment that loads the model needs `flipgate` installed. `log_model` logs a folder as
the pyfunc (the registry's one way in); loading one imports no tracking code.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before mlflow is imported: never phone home

import mlflow.pyfunc  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from flipgate.errors import FlipgateError  # noqa: E402
from flipgate.io import writer_temp_dir  # noqa: E402

MANIFEST = "flipgate.json"  # shared with flipgate.models.classifier.save_classifier
ARTIFACT_KEY = "model"  # the folder's key in the pyfunc's artifacts (MLmodel maps it to its path)
DEFAULT_MAX_LENGTH = 128
DEFAULT_BATCH_SIZE = 64
CODE_FILE = Path(__file__).with_name("pyfunc_model.py")  # what MLflow logs and runs to build the pyfunc

ENTRY_POINTS = "flipgate.model_kinds"  # kind = "module:function" in a package's entry points


def _loaders() -> dict[str, str]:
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}
    return {**found, "hf": "flipgate.models.pyfunc:load_hf"}


# kind -> "module:function" taking a folder and returning a Predictor; imported only when used.
LOADERS: dict[str, str] = _loaders()


class Predictor(Protocol):
    def predict_logits(self, texts: list[str]) -> np.ndarray: ...


def model_kind(folder: str | Path) -> str:
    """The folder's kind from flipgate.json, else "hf" when it holds config.json.

    Raises FlipgateError for a missing folder, an unreadable manifest or an unknown kind.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if manifest.exists():
        try:
            kind = json.loads(manifest.read_text()).get("kind")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise FlipgateError(f"{manifest}: expected a JSON object with a 'kind' key ({exc})") from exc
        if kind not in LOADERS:
            raise FlipgateError(f"{manifest}: unknown kind {kind!r}; known: {sorted(LOADERS)} (a kind is an entry "
                                f"point in {ENTRY_POINTS!r} of an installed package: in a checkout, pip install -e .)")
        return kind
    if (folder / "config.json").exists():
        return "hf"
    raise FlipgateError(
        f"{folder}: not a model folder (no {MANIFEST} and no config.json); "
        f"point at a save_pretrained folder or a folder with a {MANIFEST}"
    )


def load_any(folder: str | Path, **options: Any) -> Predictor:
    """Load a model folder of any known kind; options (max_length, batch_size, device) go to its loader."""
    kind = model_kind(folder)
    module_name, func_name = LOADERS[kind].split(":")
    try:
        loader = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise FlipgateError(
            f"{folder}: model kind {kind!r} needs {module_name}.{func_name}(folder, **options), "
            f"which cannot be imported ({exc}): that kind is not wired yet, or its module is broken"
        ) from exc
    return loader(Path(folder), **options)


class HFPredictor:
    """An HF sequence classifier and its tokenizer, run exactly as the pipeline's predict step runs them."""

    def __init__(self, model, tokenizer, device, max_length: int, batch_size: int) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_length, self.batch_size = max_length, batch_size

    def predict_logits(self, texts: list[str]) -> np.ndarray:
        from flipgate.models.predict import predict_logits

        return predict_logits(self.model, self.tokenizer, list(texts), self.device, self.batch_size, self.max_length)


def load_hf(
    folder: Path,
    max_length: int = DEFAULT_MAX_LENGTH,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "auto",
) -> HFPredictor:
    """Load an HF save_pretrained folder (model + tokenizer). device "auto": cuda, mps, else cpu."""
    from flipgate.models.classifier import load_classifier
    from flipgate.models.device import get_device

    model, tokenizer = load_classifier(str(folder))
    dev = get_device(device)
    return HFPredictor(model.to(dev).eval(), tokenizer, dev, max_length, batch_size)


class FlipgatePyfunc(mlflow.pyfunc.PythonModel):
    """The one pyfunc for every kind: the model folder is the artifact `model`; model_config carries
    max_length, batch_size and device (set at log time, overridable at load time)."""

    def load_context(self, context) -> None:
        folder = context.artifacts[ARTIFACT_KEY]
        self.predictor = load_any(folder, **(context.model_config or {}))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise FlipgateError(f"input has columns {list(model_input.columns)}; it needs a 'text' column")
            texts = model_input["text"].astype(str).tolist()
        else:  # a list of strings or a Series
            texts = [str(t) for t in model_input]
        logits = self.predictor.predict_logits(texts)
        return pd.DataFrame({"pred": logits.argmax(axis=1).astype(np.int64), "logits": list(logits)})


# ---------------------------------------------------------------- logging a folder as the pyfunc


def log_model(folder: str | Path, name: str = "model", experiment: str | None = None, **model_config: Any):
    """Log a model folder (any kind `load_any` loads) as the pyfunc to the active run, or, when there is
    none, to a short run `log-<folder name>` in `experiment` (default: tracking's; never MLflow's Default
    experiment, whose artifacts land in ./mlruns of whichever directory first opened the store); returns
    MLflow's ModelInfo. model_config: max_length, batch_size, device (read back by load_context)."""
    folder = Path(folder)
    model_kind(folder)  # fail here, naming the folder, rather than at load time
    if mlflow.active_run() is None:
        from mlflow.tracking import MlflowClient

        from flipgate import tracking

        exp_id = tracking.experiment_id(MlflowClient(), experiment or tracking.DEFAULT_EXPERIMENT)
        with mlflow.start_run(experiment_id=exp_id, run_name=f"log-{folder.name}"):
            return _log_pyfunc(folder, name, model_config)
    return _log_pyfunc(folder, name, model_config)


def _log_pyfunc(folder: Path, name: str, model_config: dict[str, Any]):
    """Models from code: MLflow copies the wrapper's code file into the model, not a pickle of it, so
    loading the model unpickles nothing (the file only imports the installed flipgate)."""
    with warnings.catch_warnings(), _quiet("mlflow.pyfunc"), _staging():
        # A deliberate choice MLflow warns about on every call: no input example (it would run the
        # model; the signature is explicit instead).
        warnings.filterwarnings("ignore", message=".*input_example.*", category=UserWarning)
        return mlflow.pyfunc.log_model(name=name, **_pyfunc_args(folder, model_config))


def save_model(folder: str | Path, path: str | Path, **model_config: Any) -> Path:
    """Save a model folder as the same pyfunc `log_model` logs, at `path` (a folder that must not exist),
    with no run and no store: for `mlflow.pyfunc.spark_udf`, which loads pyfuncs, not model folders."""
    folder = Path(folder)
    model_kind(folder)
    with warnings.catch_warnings(), _quiet("mlflow.pyfunc"):
        warnings.filterwarnings("ignore", message=".*input_example.*", category=UserWarning)
        mlflow.pyfunc.save_model(path=str(path), **_pyfunc_args(folder, model_config))
    return Path(path)


def _pyfunc_args(folder: Path, model_config: dict[str, Any]) -> dict[str, Any]:
    return dict(
        python_model=str(CODE_FILE),
        artifacts={ARTIFACT_KEY: str(folder)},
        model_config=model_config or None,
        signature=_signature(),
        pip_requirements=pip_requirements(),  # inferring them would load the model: seconds per log
    )


STAGING = "flipgate-mlflow"  # in the system temp folder: .flipgate-mlflow.<pid>@<host>.XXXX.tmp


@contextlib.contextmanager
def _staging() -> Iterator[None]:
    """Have MLflow stage the model it logs (a full copy, in a tempfile folder it removes when done) in a
    folder named by this process, removed at the next log once this process is dead: a killed log would
    otherwise leave a model copy in the system temp folder for good. Sets tempfile.tempdir meanwhile."""
    folder = str(writer_temp_dir(Path(tempfile.gettempdir()) / STAGING))
    before, tempfile.tempdir = tempfile.tempdir, folder
    try:
        yield
    finally:
        tempfile.tempdir = before
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.string, "text")]),
        outputs=Schema([ColSpec(DataType.long, "pred"), ColSpec(Array(DataType.float), "logits")]),
    )


def pip_requirements() -> list[str]:
    """What the pyfunc needs, pinned to the versions installed here. flipgate itself is not on an
    index: an environment that loads the model needs it installed (`pip install -e .`)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas"):
        try:
            reqs.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            reqs.append(dist)
    return reqs
