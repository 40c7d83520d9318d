"""`logger=mlflow`: an MLflow run per run directory: params = the resolved config (dotted
keys), metrics = every number of metrics.jsonl at its iteration (step), sample grids as
artifacts under samples/. Default store: the file store `mlruns/` in the working directory
(`mlflow ui --backend-store-uri mlruns`); `logger.mlflow.tracking_uri` takes any MLflow URI
(sqlite:///mlflow.db, http://host:5000, databricks)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from PIL import Image

from ganqp_cli import keyspec as K
from ganqp_cli.trackers.base import Tracker, flatten, numbers, store_id, stored_id

STATUS = {"done": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
MAX_VALUE = 6000  # MLflow's longest param value
BATCH = 100       # params per request, the tracking server's limit


def file_store_uri(uri: str | None) -> str:
    return uri if uri else (Path.cwd() / "mlruns").as_uri()


class MlflowTracker(Tracker):
    package, extra = "mlflow", "mlflow"
    KEYS = {"tracking_uri": lambda key, v: v if v is None else K.text(key, v),
            "experiment": K.text, "run_name": lambda key, v: v if v is None else K.text(key, v),
            "log_grids": K.flag}

    def __init__(self, run_dir: Path, resolved: dict[str, Any], start: int,
                 tracking_uri: str | None = None, experiment: str = "ganqp",
                 run_name: str | None = None, log_grids: bool = True) -> None:
        uri = file_store_uri(tracking_uri)
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store only in maintenance mode and refuses it unless
            # asked for; it is still the store that needs no database or server.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        self.client, self.log_grids = MlflowClient(tracking_uri=uri), log_grids
        found = stored_id(run_dir, "mlflow")
        run = None
        if found and found.get("tracking_uri") == uri:
            try:
                run = self.client.get_run(found["run_id"])
            except Exception:  # noqa: BLE001 - deleted, or another store: start a new one
                run = None
        if run is None:
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
            run = self.client.create_run(exp_id, run_name=run_name or run_dir.name,
                                         tags={"ganqp.run_dir": str(run_dir.resolve())})
            store_id(run_dir, "mlflow", {"run_id": run.info.run_id, "tracking_uri": uri})
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
        self.run_id = run.info.run_id
        have = run.data.params
        params = {k: str(v)[:MAX_VALUE] for k, v in flatten(resolved).items()}
        # MLflow refuses to change a logged param: a resume with another value (a longer
        # train.iters) is recorded as a tag instead.
        changed = {k: v for k, v in params.items() if k in have and have[k] != v}
        new = [Param(k, v) for k, v in params.items() if k not in have]
        for i in range(0, len(new), BATCH):
            self.client.log_batch(self.run_id, params=new[i:i + BATCH])
        if changed:
            self.client.set_tag(self.run_id, f"ganqp.changed_at_{start}",
                                ", ".join(f"{k}={v}" for k, v in changed.items()))

    def log(self, it: int, values: dict[str, Any]) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, it) for k, v in numbers(values).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def image(self, it: int, name: str, img: Image.Image, path: Path) -> None:
        if self.log_grids:
            self.client.log_artifact(self.run_id, str(path), name)

    def close(self, outcome: str) -> None:
        self.client.set_terminated(self.run_id, STATUS.get(outcome, "KILLED"))
