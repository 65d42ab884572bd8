"""Tables in the paper's layout: Markdown and CSV, best per column marked; per-image CSV.

Layout follows Table 1 of the paper: `Test Dataset | Method | PSNR↑ | SSIM↑ | ...`, the
dataset named on the first row of its group, and within each group the best, second and
third value of each column marked (Markdown: **best**, <u>second</u>, *third*; the paper
uses bold red / underlined blue / italic green). The CSV keeps plain numbers and adds a
`best` column naming the columns in which that row is best.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..imageio import write_text

# Digits as the paper prints them; anything else gets 4.
DIGITS = {"psnr": 2, "musiq": 2, "piqe": 2, "brisque": 2, "seconds": 2}
MARKS = {1: "**{}**", 2: "<u>{}</u>", 3: "*{}*"}


@dataclass(frozen=True)
class Column:
    """One numeric column. lower_better=None: not ranked (e.g. counts)."""

    key: str
    title: str
    lower_better: Optional[bool] = False
    digits: Optional[int] = None

    @property
    def header(self) -> str:
        arrow = "" if self.lower_better is None else ("↓" if self.lower_better else "↑")
        return f"{self.title}{arrow}"

    def fmt(self, value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        digits = self.digits if self.digits is not None else DIGITS.get(self.key, 4)
        return f"{value:.{digits}f}"


def mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v) and not math.isinf(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def ranks(values: Sequence[Optional[float]], lower_better: Optional[bool]) -> list[Optional[int]]:
    """1-based dense rank of each value (ties share a rank); None/NaN or unranked -> None."""
    if lower_better is None:
        return [None] * len(values)
    valid = sorted({round(v, 12) for v in values if v is not None and not math.isnan(v)},
                   reverse=not lower_better)
    order = {v: i + 1 for i, v in enumerate(valid)}
    return [order.get(round(v, 12)) if v is not None and not math.isnan(v) else None for v in values]


def _group_ranks(rows: list[dict], columns: Sequence[Column]) -> list[dict]:
    """Per row, column key -> rank within the row's group."""
    out = [dict() for _ in rows]
    for group in dict.fromkeys(r.get("group", "") for r in rows):
        idx = [i for i, r in enumerate(rows) if r.get("group", "") == group]
        for col in columns:
            for i, rk in zip(idx, ranks([rows[i].get(col.key) for i in idx], col.lower_better)):
                out[i][col.key] = rk
    return out


def markdown_table(rows: list[dict], columns: Sequence[Column], group_title: str = "Test Dataset",
                   top: int = 3) -> str:
    """rows: dicts with 'group', 'method' and one value per column key."""
    header = [group_title, "Method"] + [c.header for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rank_rows = _group_ranks(rows, columns)
    last_group = None
    for row, rk in zip(rows, rank_rows):
        group = row.get("group", "")
        cells = [group if group != last_group else "", row["method"]]
        last_group = group
        for col in columns:
            text = col.fmt(row.get(col.key))
            r = rk.get(col.key)
            cells.append(MARKS[r].format(text) if r is not None and r <= top and text != "-" else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict], columns: Sequence[Column], group_title: str = "dataset") -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([group_title, "method"] + [c.key for c in columns] + ["best"])
    for row, rk in zip(rows, _group_ranks(rows, columns)):
        best = ";".join(c.key for c in columns if rk.get(c.key) == 1)
        writer.writerow([row.get("group", ""), row["method"]]
                        + [col.fmt(row.get(col.key)) if row.get(col.key) is not None else ""
                           for col in columns] + [best])
    return buf.getvalue()


def per_image_csv(records: list[dict], value_keys: Sequence[str], extra: Sequence[str] = ()) -> str:
    """records: dicts with 'group', 'key', 'method', plus value_keys and extra columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dataset", "image", "method", *extra, *value_keys])
    for r in records:
        vals = ["" if r.get(k) is None else repr(float(r[k])) for k in value_keys]
        writer.writerow([r.get("group", ""), r["key"], r["method"], *[r.get(e, "") for e in extra], *vals])
    return buf.getvalue()


def summarise(records: list[dict], keys: Sequence[str], methods: Sequence[str]) -> list[dict]:
    """Mean of each key per (group, method), in method order; adds 'count'."""
    out = []
    for group in dict.fromkeys(r.get("group", "") for r in records):
        for m in methods:
            mine = [r for r in records if r.get("group", "") == group and r["method"] == m]
            if not mine:
                continue
            row = {"group": group, "method": m, "count": len(mine)}
            for k in keys:
                row[k] = mean([r.get(k) for r in mine if r.get(k) is not None])
            out.append(row)
    return out


def write_report(out_dir: Path, name: str, title: str, rows: list[dict], columns: Sequence[Column],
                 notes: Sequence[str] = (), group_title: str = "Test Dataset") -> dict[str, Path]:
    """Write <name>.md and <name>.csv; returns their paths."""
    md = [f"# {title}", "", markdown_table(rows, columns, group_title)]
    md += ["**best**, <u>second</u>, *third* per column within each dataset; "
           "↑/↓: higher/lower is better."]
    md += [""] + [f"- {n}" for n in notes] if notes else []
    paths = {"markdown": Path(out_dir) / f"{name}.md", "csv": Path(out_dir) / f"{name}.csv"}
    write_text(paths["markdown"], "\n".join(md) + "\n")
    write_text(paths["csv"], csv_table(rows, columns, group_title.lower().replace(" ", "_")))
    return paths
