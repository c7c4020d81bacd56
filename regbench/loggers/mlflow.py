"""MLflow: a run per job (named by its run id, the resolved config as flattened params), and inside it a nested run
per member (arm, seed and the member's regularizer settings as params; its curves as metrics with step = epoch, and
its final metrics as final_*), in the experiment `experiment` of the tracking store `tracking_uri`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from regbench.reporting.stats import flatten
from regbench.schema import param
from regbench.train.evaluate import COLUMNS  # the curves: loss and accuracy on each split


@dataclass
class MlflowConfig:
    tracking_uri: str = param("results/mlruns", "MLflow tracking store: a folder, or a server's http(s):// address")
    experiment: str = param("regbench", "MLflow experiment the runs go to")


def _uri(uri: str) -> str:
    """A folder is MLflow's file store, which needs no database package (MLflow 3 keeps it in maintenance mode and
    asks for this opt-in); a path ending in .db is a SQLite store (needs sqlalchemy); anything with :// is used as
    given (a tracking server)."""
    if "://" in uri:
        return uri
    if uri.endswith(".db"):
        return f"sqlite:///{Path(uri).resolve()}"
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(uri).resolve().as_uri()


def log_mlflow(cfg: MlflowConfig, record: dict, folder: Path) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=_uri(cfg.tracking_uri))
    exp = client.get_experiment_by_name(cfg.experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(cfg.experiment)
    config = flatten(record["provenance"].get("config", {}))
    parent = client.create_run(exp_id, run_name=record["run_id"], tags={"regbench.folder": str(folder)})
    pid = parent.info.run_id
    client.log_batch(pid, params=[Param(k, str(v)[:500]) for k, v in config.items()])
    for m in record["members"]:
        child = client.create_run(
            exp_id,
            run_name=f"{m['arm']}-seed{m['seed']}",
            tags={"mlflow.parentRunId": pid, "regbench.run_id": record["run_id"]},
        )
        cid = child.info.run_id
        params = {"arm": m["arm"], "seed": m["seed"], **flatten(m["regularizers"], "regularizers.")}
        rows = [r for r in record["history"] if r["member"] == m["member"]]
        now = int(time.time() * 1000)
        metrics = [Metric(c, float(r[c]), now, int(r["epoch"])) for r in rows for c in COLUMNS]
        metrics += [
            Metric(f"final_{k}", float(v), now, int(m["epochs"])) for k, v in m["final"].items() if v is not None
        ]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            client.log_batch(
                cid,
                metrics=metrics[start : start + 1000],
                params=[Param(k, str(v)) for k, v in params.items()] if start == 0 else [],
            )
        client.set_terminated(cid)
    client.set_terminated(pid)
    return f"{cfg.tracking_uri} experiment {cfg.experiment!r}, run {record['run_id']}"
