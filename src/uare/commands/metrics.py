"""`uare metrics --pred PATH [--ref PATH] [--metrics psnr,ssim,niqe,...] [--y-channel]
[--crop-border N] [--csv FILE]`: score images, one CSV row per image and a summary.

With --ref, files are paired by name (stem) across the two folders (or the two files are
one pair) and both full-reference and no-reference metrics apply; without it only
no-reference metrics can run. Inputs go through `uare.imageio.load_image`: grey images
are replicated to RGB, RGBA is composited on white, 16-bit is scaled to 8 bits. A pair
whose sizes differ (or any unreadable file) is reported by name, the others are still
scored, and the exit code is 1.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path

from ..cli import UsageError, emit_json, info, progress

DEFAULT_FR = ("psnr", "ssim")
DEFAULT_NR = ("niqe",)
Y_OPTION = ("psnr", "ssim", "ms_ssim")


def add_arguments(parser) -> None:
    parser.add_argument("--pred", required=True, metavar="PATH", help="image file or folder to score")
    parser.add_argument("--ref", metavar="PATH", help="reference file or folder (pairs by file name)")
    from ..metrics.registry import SPECS

    parser.add_argument("--metrics", metavar="LIST",
                        help=f"comma-separated, from {', '.join(SPECS)} (default: psnr,ssim,niqe with "
                             "--ref, niqe without); lpips/lpips-vgg/dists need their weight files")
    parser.add_argument("--y-channel", action=argparse.BooleanOptionalAction, default=True,
                        help="PSNR/SSIM on the BT.601 Y channel (default) or, with --no-y-channel, on RGB")
    parser.add_argument("--crop-border", type=int, default=0, metavar="N",
                        help="pixels cut from each side before scoring (SR papers: the scale factor)")
    parser.add_argument("--convention", choices=("sr", "matlab", "pyiqa"), default="sr",
                        help="metric conventions: sr (BasicSR/papers, default), matlab (rounded Y), pyiqa")
    parser.add_argument("--csv", metavar="FILE", help="write per-image values to this CSV file")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per image and a summary object on stdout")


def build_metrics(args, have_ref: bool) -> list:
    from ..metrics import create_metric

    names = [n for n in (args.metrics or "").split(",") if n.strip()] or \
        list(DEFAULT_FR + DEFAULT_NR if have_ref else DEFAULT_NR)
    out = []
    for name in names:
        try:
            probe = create_metric(name)
            opts = {}
            if probe.mode == "FR" and probe.name in Y_OPTION:
                opts = {"y_channel": args.y_channel, "convention": args.convention}
            if probe.name == "niqe":
                opts = {"convention": args.convention}
            metric = create_metric(name, **opts) if opts else probe
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from e
        if metric.mode == "FR" and not have_ref:
            raise UsageError(f"{metric.name} is full-reference: give --ref, or choose no-reference metrics")
        out.append(metric)
    return out


def make_pairs(pred: str, ref: str | None) -> tuple[list[tuple[Path, Path | None]], list[str]]:
    """(pred, ref) path pairs matched by stem, and the names of predictions without a match."""
    from ..imageio import list_images

    try:
        preds = list_images(pred)
        refs = list_images(ref) if ref else []
    except ValueError as e:
        raise UsageError(str(e)) from e
    if not preds:
        raise UsageError(f"{pred}: no images found")
    if ref is None:
        return [(p, None) for p in preds], []
    if Path(pred).is_file() and Path(ref).is_file():
        return [(preds[0], refs[0])], []
    by_stem = {r.stem: r for r in refs}
    pairs = [(p, by_stem[p.stem]) for p in preds if p.stem in by_stem]
    missing = [str(p) for p in preds if p.stem not in by_stem]
    return pairs, missing


def score_pair(metrics: list, pred: Path, ref: Path | None, crop: int) -> dict:
    """All metrics for one pair; each image is read once."""
    import numpy as np

    from ..imageio import to_array

    p = to_array(pred)
    r = None if ref is None else to_array(ref)
    if r is not None and p.shape != r.shape:
        raise ValueError(f"{pred} vs {ref}: sizes differ ({p.shape[1]}x{p.shape[0]} vs "
                         f"{r.shape[1]}x{r.shape[0]})")
    if crop:
        if 2 * crop >= min(p.shape[:2]):
            raise ValueError(f"{pred}: --crop-border {crop} leaves nothing of a {p.shape[1]}x{p.shape[0]} image")
        p = np.ascontiguousarray(p[crop:-crop, crop:-crop])
        r = None if r is None else np.ascontiguousarray(r[crop:-crop, crop:-crop])
    return {m.name: float(m(p, r) if m.mode == "FR" else m(p)) for m in metrics}


def write_csv(path: str, rows: list[dict], names: list[str]) -> None:
    from ..imageio import write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["name", "pred", "ref", *names, "error"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def summarise(rows: list[dict], metrics: list) -> dict:
    """Mean of each metric over the images that scored (inf PSNR makes the mean inf)."""
    ok = [r for r in rows if not r.get("error")]
    return {m.name: (math.fsum(r[m.name] for r in ok) / len(ok) if ok else math.nan) for m in metrics}


def _journal(args, metrics: list) -> tuple[Path | None, dict, dict]:
    """With --csv, finished rows are appended to FILE.partial.jsonl as they come, so a
    killed run resumes where it stopped. Returns (journal path, settings, rows done
    earlier with the same settings, keyed by (pred, ref))."""
    if not args.csv:
        return None, {}, {}
    from ..imageio import read_jsonl

    settings = {"metrics": [m.name for m in metrics], "y_channel": args.y_channel,
                "crop_border": args.crop_border, "convention": args.convention}
    path = Path(f"{args.csv}.partial.jsonl")
    done = {(r["row"]["pred"], r["row"]["ref"]): r["row"] for r in read_jsonl(path)
            if r.get("settings") == settings and not r["row"].get("error")}
    if done:
        info(f"resuming: {len(done)} image(s) already scored in {path}")
    return path, settings, done


def run(args) -> int:
    from ..imageio import append_jsonl

    pairs, missing = make_pairs(args.pred, args.ref)
    metrics = build_metrics(args, have_ref=args.ref is not None)
    if args.crop_border < 0:
        raise UsageError("--crop-border must be >= 0")
    journal, settings, done = _journal(args, metrics)
    rows = [{"name": Path(m).stem, "pred": m, "ref": "",
             "error": f"{m}: no reference named {Path(m).stem}.* in {args.ref}"} for m in missing]
    for pred, ref in progress(pairs, "metrics", total=len(pairs)):
        row = {"name": pred.stem, "pred": str(pred), "ref": "" if ref is None else str(ref)}
        if (row["pred"], row["ref"]) in done:
            row = done[(row["pred"], row["ref"])]
        else:
            try:
                row.update(score_pair(metrics, pred, ref, args.crop_border))
            except (ValueError, OSError) as e:
                row["error"] = str(e)
            if journal is not None:
                append_jsonl(journal, {"settings": settings, "row": row})
        rows.append(row)
        if args.json:
            emit_json(row)
    code = report(args, rows, metrics)
    if journal is not None:
        journal.unlink(missing_ok=True)  # the CSV is complete now
    return code


def report(args, rows: list[dict], metrics: list) -> int:
    names = [m.name for m in metrics]
    failed = [r for r in rows if r.get("error")]
    for r in failed:
        info(f"failed: {r['error']}")
    if args.csv:
        write_csv(args.csv, rows, names)
        info(f"per-image values: {args.csv}")
    means = summarise(rows, metrics)
    n_ok = len(rows) - len(failed)
    if args.json:
        emit_json({"summary": means, "images": n_ok, "failed": len(failed)})
    else:
        print(f"mean over {n_ok} image(s)" + (f" ({len(failed)} failed)" if failed else ""))
        for m in metrics:
            arrow = "lower is better" if m.lower_better else "higher is better"
            print(f"  {m.name:10s} {means[m.name]:10.4f}   ({arrow})")
    return 1 if failed else 0
