"""Two `scripts/eval_tiny.sh` run folders side by side, row by row, against issue 7's rule
for shipping a new model: every target row that passes in BASE still passes in CAND, and
at least one row that fails in BASE passes in CAND (`--rule gain`, the default), or, with
`--rule keep`, none is lost and CAND is better than BASE on more rows than it is worse
(for a candidate that moves no target but improves most rows).

    python scripts/compare_runs.py runs/eval-s13luma runs/eval-s14g2o [--prompt named] [--rule keep]

A row is one preset (or the SR set) of one table: the restoration passes when its PSNR-Y
is above the degraded input's (the `bicubic` row of the same table), SR when it beats
bicubic up-sampling in PSNR-Y and, as a second row, in NIQE. `--prompt` picks the uare
method of the restore tables: `named` (default; the instruction that names the
degradations: the model card's rule), `simple` (the task's or the mix's own instruction)
or `analyze` (assessment first). Two more target rows where their files exist: real camera
noise (`cc15/uare.csv` against `cc15/nlmeans.csv`, per-image PSNR-Y as eval_tiny.sh writes
them), and per mixed table the assessment-guided prompt against the simple one over all
its mixes (passes when guided is better in PSNR-Y or in NIQE; its value is guided's mean
PSNR-Y). The IQA rows have no such table: compare them by hand. Exit status 0 when CAND
passes the rule, 1 when not, 2 on bad input.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from statistics import mean
from typing import NamedTuple, Optional

TABLES = ("sr-drealsr/sr.csv", "single-imagenet_x4_synthetic/restore.csv", "single-set5_x4/restore.csv",
          "mixed-imagenet_x4_synthetic/restore.csv", "mixed-set5_x4/restore.csv")


class Row(NamedTuple):
    value: float               # the model's
    ref: float                 # what it must beat
    higher: bool               # higher is better
    ok: Optional[bool] = None  # the target's own verdict, where it is not value vs ref

    @property
    def passes(self) -> bool:
        return passes(self.value, self.ref, self.higher) if self.ok is None else self.ok


def _kind(method: str) -> str:
    if method.startswith("bicubic"):
        return "input"
    if not method.startswith("uare"):
        return "other"
    # labels are MethodSpec.label: "uare(model=DIR,named)", or "uare(named)" for the default model
    flags = method[method.find("(") + 1:method.rfind(")")].split(",") if "(" in method else []
    return "analyze" if "analyze" in flags else "named" if "named" in flags else "simple"


def _mean_psnr(path: Path) -> Optional[float]:
    """Mean of a `uare metrics --csv` file's psnr column (None without one)."""
    if not path.exists():
        return None
    with open(path, newline="") as f:
        vals = [float(r["psnr"]) for r in csv.DictReader(f) if r.get("psnr")]
    return mean(vals) if vals else None


def _guided_rows(by: dict) -> dict[str, Row]:
    """Per set of a mixed table: guided (analyze) vs simple over every mix of the set."""
    sets: dict[str, dict[str, list]] = {}
    for (ds, kind), r in by.items():
        if kind in ("analyze", "simple"):
            sets.setdefault(ds.split()[0], {}).setdefault(kind, []).append(r)

    def avg(rs: list, col: str) -> float:
        return mean(float(r[col]) for r in rs)

    out = {}
    for name, got in sets.items():
        guided, simple = got.get("analyze", []), got.get("simple", [])
        if not guided or len(guided) != len(simple):
            continue
        g, s = avg(guided, "psnr"), avg(simple, "psnr")
        ok = g > s
        if all(r.get("niqe") for r in guided + simple):
            ok = ok or avg(guided, "niqe") < avg(simple, "niqe")
        out[f"{name} mixes guided vs simple PSNR-Y (or NIQE)"] = Row(g, s, True, ok)
    return out


def rows(folder: Path, prompt: str) -> dict[str, Row]:
    """{row name: Row} for every table found."""
    out = {}
    for name in TABLES:
        path = folder / name
        if not path.exists():
            continue
        by = {}
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                by[(r["test_dataset"], _kind(r["method"]))] = r
        sr = name.startswith("sr-")
        for ds in dict.fromkeys(d for d, _ in by):
            ref, got = by.get((ds, "input")), by.get((ds, "simple" if sr else prompt))
            if ref is None or got is None:
                continue
            out[f"{ds} PSNR-Y"] = Row(float(got["psnr"]), float(ref["psnr"]), True)
            if sr and got.get("niqe") and ref.get("niqe"):
                out[f"{ds} NIQE"] = Row(float(got["niqe"]), float(ref["niqe"]), False)
        if name.startswith("mixed-"):
            out.update(_guided_rows(by))
    model, nlm = _mean_psnr(folder / "cc15" / "uare.csv"), _mean_psnr(folder / "cc15" / "nlmeans.csv")
    if model is not None and nlm is not None:
        out["real_noise_cc15 PSNR-Y (against NLM)"] = Row(model, nlm, True)
    return out


def passes(model: float, ref: float, higher: bool) -> bool:
    return model > ref if higher else model < ref


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base")
    ap.add_argument("cand")
    ap.add_argument("--prompt", choices=["named", "simple", "analyze"], default="named")
    ap.add_argument("--rule", choices=["gain", "keep"], default="gain",
                    help="gain: none lost and one gained; keep: none lost and better on more rows than worse")
    args = ap.parse_args(argv)
    base, cand = (rows(Path(p), args.prompt) for p in (args.base, args.cand))
    for p, r in ((args.base, base), (args.cand, cand)):
        if not r:
            print(f"{p}: no eval table with a bicubic row and a uare ({args.prompt}) row "
                  f"under it (looked for {', '.join(TABLES)})", file=sys.stderr)
            return 2
    common = [k for k in base if k in cand]
    lost, gained, better, worse = [], [], [], []
    print(f"| row | input | {args.base} | {args.cand} |\n|---|---|---|---|")
    for k in common:
        (b, ref, hi, _), c = base[k], cand[k].value
        pb, pc = base[k].passes, cand[k].passes
        if pb and not pc:
            lost.append(k)
        if pc and not pb:
            gained.append(k)
        if round(c, 2) != round(b, 2):    # the tables' own precision: no tie-breaking on noise
            (better if passes(c, b, hi) else worse).append(k)
        mark = {(True, False): " **lost**", (False, True): " **gained**"}.get((pb, pc), "")
        print(f"| {k} | {ref:.2f} | {b:.2f} {'pass' if pb else 'fail'} | {c:.2f} {'pass' if pc else 'fail'}{mark} |")
    only = sorted(set(base) ^ set(cand))
    if only:
        print(f"\nrows in one folder only (not compared): {', '.join(only)}")
    ok = not lost and (bool(gained) if args.rule == "gain" else len(better) > len(worse))
    why = ("loses a passing row" if lost else "gains no failing row" if args.rule == "gain"
           else "not better on more rows than worse")
    print(f"\n{len(common)} rows: passing {sum(base[k].passes for k in common)} -> "
          f"{sum(cand[k].passes for k in common)}; lost {len(lost)}, gained {len(gained)}; "
          f"CAND better on {len(better)}, worse on {len(worse)}: "
          + (f"CAND passes the rule ({args.rule})" if ok else f"CAND does not pass the rule ({args.rule}: {why})"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
