"""`uare eval {sr,restore,iqa,monotonic,methods}`: benchmark tables, plots and a gallery.

    uare eval sr --lr LR/ --hr HR/ --methods bicubic,realesrgan,uare:model=DIR -o runs/sr
    uare eval restore --hq HQ/ --preset multi:lowlight+noise --methods bicubic,gamma,clahe -o runs/ll
    uare eval iqa --images ROOT --scores KonIQ-10k.txt --format koniq10k --methods niqe,uare -o runs/iqa
    uare eval monotonic --hq HQ/ --methods niqe,piqe -o runs/mono

Per-image results are cached in OUT/cache.jsonl: run the same command again to resume.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import UsageError, emit_json, info

DEFAULT_METHODS = {"sr": "bicubic", "restore": "bicubic", "iqa": "niqe", "monotonic": "niqe"}


def _common(p: argparse.ArgumentParser, task: str) -> None:
    p.add_argument("-o", "--out", required=True, type=Path, help="run folder (tables, plots, gallery, cache)")
    p.add_argument("--methods", default=DEFAULT_METHODS[task],
                   help="comma-separated method specs, e.g. bicubic,realesrgan,uare:model=DIR:steps=8:analyze "
                        "(see `uare eval methods`)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (quick runs)")
    p.add_argument("--name", default=None, help="dataset name in the tables")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary rows as JSON on stdout")


def _fidelity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", default=None,
                   help="comma-separated metric names (default: psnr,ssim,lpips,dists,niqe for sr; "
                        "psnr,ssim,lpips,niqe for restore; ones without weights are skipped)")
    p.add_argument("--crop-border", type=int, default=None,
                   help="pixels cut from each side before PSNR/SSIM (default: the scale)")
    p.add_argument("--rgb", action="store_true", help="PSNR/SSIM on RGB instead of Y (BT.601)")
    p.add_argument("--no-gallery", action="store_true")
    p.add_argument("--gallery-rows", type=int, default=40, help="images shown in the gallery")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_task", metavar="TASK", required=True)
    p = sub.add_parser("sr", help="super-resolution of LR against HR (Table 1 layout)")
    p.add_argument("--lr", required=True, type=Path)
    p.add_argument("--hr", required=True, type=Path)
    p.add_argument("--scale", type=int, default=4)
    _common(p, "sr")
    _fidelity(p)
    p = sub.add_parser("restore", help="degrade HQ images with a preset, restore, score (Table 2)")
    p.add_argument("--hq", required=True, type=Path)
    p.add_argument("--preset", required=True, help="single:TYPE[:SEVERITY], multi:A+B[+C] or realesrgan; "
                   "several, comma-separated, give one table group each")
    _common(p, "restore")
    _fidelity(p)
    p = sub.add_parser("iqa", help="PLCC/SRCC against human opinion scores (Table 3)")
    p.add_argument("--images", required=True, type=Path, help="root the score file's paths are under")
    p.add_argument("--scores", required=True, type=Path)
    p.add_argument("--format", required=True, help="csv (columns image,mos), koniq10k, kadid10k, spaq, "
                   "livec, csiq, pipal or agiqa3k")
    p.add_argument("--split", default=None, help="only rows of this split (KonIQ official: test)")
    _common(p, "iqa")
    p = sub.add_parser("monotonic", help="label-free IQA check: quality must fall with severity")
    p.add_argument("--hq", required=True, type=Path)
    p.add_argument("--types", default="blur,noise,jpeg,lowlight,haze")
    p.add_argument("--levels", default="0.2,0.4,0.6,0.8,1.0")
    _common(p, "monotonic")
    sub.add_parser("methods", help="list the methods that can be evaluated")


def _config(args):
    from ..eval import EvalConfig
    metrics = getattr(args, "metrics", None)
    return EvalConfig(
        out=args.out, methods=[m for m in args.methods.split(",") if m.strip()],
        metrics=[m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
        limit=args.limit, y_channel=not getattr(args, "rgb", False),
        crop_border=getattr(args, "crop_border", None), seed=args.seed, name=args.name,
        plots=not args.no_plots, gallery=not getattr(args, "no_gallery", True),
        gallery_rows=getattr(args, "gallery_rows", 40))


def _dispatch(args):
    from ..eval import evaluate_iqa, evaluate_monotonic, evaluate_restore, evaluate_sr
    cfg = _config(args)
    if args.eval_task == "sr":
        return evaluate_sr(args.lr, args.hr, cfg, scale=args.scale)
    if args.eval_task == "restore":
        return evaluate_restore(args.hq, [p.strip() for p in args.preset.split(",") if p.strip()], cfg)
    if args.eval_task == "iqa":
        return evaluate_iqa(args.images, args.scores, args.format, cfg, split=args.split)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    try:
        levels = [float(v) for v in args.levels.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--levels must be numbers, got {args.levels!r}") from None
    return evaluate_monotonic(args.hq, cfg, types=types, levels=levels)


def run(args) -> int:
    if args.eval_task == "methods":
        from ..eval import list_methods
        for name, text in list_methods().items():
            print(f"{name:16s} {text}")
        return 0
    from ..eval.methods import MethodError
    from ..eval.scoring import MetricUnavailable
    try:
        result = _dispatch(args)
    except (MethodError, MetricUnavailable, ValueError, OSError) as e:
        # Nothing was evaluated: a bad option, folder or score file (ImageError is a ValueError).
        raise UsageError(str(e)) from None
    md = result.files.get("markdown")
    if md:
        info(Path(md).read_text(encoding="utf-8"))
    for name, path in result.files.items():
        info(f"{name}: {path}")
    for failure in result.failures:
        info(f"failed: {failure}")
    if args.json:
        for row in result.table:   # NaN is not JSON: an empty cell becomes null
            emit_json({k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()})
    return result.exit_code
