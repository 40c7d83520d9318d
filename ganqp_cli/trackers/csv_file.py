"""`logger=csv`: metrics.jsonl's rows as one CSV table (`<run dir>/metrics.csv`), for a
spreadsheet or pandas. Its columns grow as new numbers appear (the first FID row); the file
is then rewritten with the wider header. A resumed run drops the rows after its checkpoint,
as it does from metrics.jsonl."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ganqp_cli import keyspec as K
from ganqp_cli.atomic import write_atomic
from ganqp_cli.trackers.base import Tracker


class CsvTracker(Tracker):
    KEYS = {"file": K.text}

    def __init__(self, run_dir: Path, resolved: dict[str, Any], start: int,
                 file: str = "metrics.csv") -> None:
        self.path = run_dir / file
        self.fields: list[str] = ["iter"]
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or ["iter"])
                self.rows = [r for r in reader if r.get("iter", "").isdigit()
                             and int(r["iter"]) <= start]
        self.rewrite()

    def rewrite(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.fields, restval="")
        w.writeheader()
        w.writerows(self.rows)
        data = buf.getvalue().encode()
        write_atomic(self.path, lambda f: f.write(data))

    def log(self, it: int, values: dict[str, Any]) -> None:
        row = {"iter": it, **{k: "" if v is None else v for k, v in values.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.fields]
        if new:
            self.fields += new
            self.rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="").writerow(row)
