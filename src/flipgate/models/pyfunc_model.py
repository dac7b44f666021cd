"""The code MLflow logs with every flipgate pyfunc (models from code) and runs to rebuild it at load
time, in place of a pickle: it only imports the installed flipgate's wrapper and hands MLflow one."""

import mlflow.models

from flipgate.models.pyfunc import FlipgatePyfunc

mlflow.models.set_model(FlipgatePyfunc())
