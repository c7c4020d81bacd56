"""TensorBoard: one event-file run per member, <log_dir>/<run id>/<arm>-seed<seed>, so TensorBoard's run selector
shows baseline and regularized members of each seed side by side. Scalars per evaluation epoch: train/val/test loss
and accuracy and the gap; the final metrics under final/; the resolved config as text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from regbench.schema import param
from regbench.train.evaluate import COLUMNS  # the curves: loss and accuracy on each split


@dataclass
class TensorBoardConfig:
    log_dir: str = param("results/tensorboard", "folder TensorBoard reads (tensorboard --logdir ...)")


def log_tensorboard(cfg: TensorBoardConfig, record: dict, folder: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    root = Path(cfg.log_dir) / record["run_id"]
    config = json.dumps(record["provenance"].get("config", {}), indent=2, default=str)
    for m in record["members"]:
        with SummaryWriter(str(root / f"{m['arm']}-seed{m['seed']}")) as w:
            for row in (r for r in record["history"] if r["member"] == m["member"]):
                for c in COLUMNS:
                    w.add_scalar(c, row[c], row["epoch"])
                w.add_scalar("gap_acc", row["train_acc"] - row["val_acc"], row["epoch"])
            for k, v in m["final"].items():
                if v is not None:
                    w.add_scalar(f"final/{k}", v, m["epochs"])
            w.add_text("config", f"```\n{config}\n```")
    return root
