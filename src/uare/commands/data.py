"""`uare data build CLEAN... -o OUT`: training manifests from a folder of clean images."""
from __future__ import annotations

from pathlib import Path

from ..cli import UsageError, info, progress


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    p = sub.add_parser("build", help="write JSONL manifests (degradations made on the fly from seeds)")
    p.add_argument("inputs", nargs="+", help="clean images or folders of them")
    p.add_argument("-o", "--out", required=True, help="output folder for the manifests")
    p.add_argument("--kinds", default="single,multi,high_order,interleaved,iqa",
                   help="comma-separated sample kinds (default: all)")
    p.add_argument("--per-image", type=int, default=4, help="lines per kind and image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recursive", action="store_true", help="look into sub-folders")
    p.add_argument("--scores", nargs=3, action="append", default=[],
                   metavar=("DATASET", "SCORE_FILE", "IMAGE_ROOT"),
                   help="add real IQA data from a published score file (koniq10k, kadid10k, "
                        "spaq, livec, csiq, pipal, agiqa3k)")


def _images(inputs: list[str], recursive: bool) -> list[Path]:
    from ..imageio import list_images

    out = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            out.extend(list_images(p, recursive=recursive))
        elif p.exists():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    if not out:
        raise UsageError("no images found in the inputs")
    return out


def run(args) -> int:
    from ..data.build import BuildConfig, build

    if getattr(args, "data_command", None) != "build":
        raise UsageError("say what to do: `uare data build CLEAN... -o OUT`")
    try:
        cfg = BuildConfig(kinds=tuple(k for k in args.kinds.split(",") if k),
                          per_image=args.per_image, seed=args.seed,
                          score_files=[tuple(s) for s in args.scores])
    except ValueError as e:
        raise UsageError(str(e)) from e
    images = _images(args.inputs, args.recursive)
    try:
        summary = build(images, Path(args.out), cfg, on_error=lambda p, e: info(f"failed: {e}"),
                        wrap=lambda it, desc, total: progress(it, desc, total=total))
    except ValueError as e:  # a score file that cannot be read (ScoreFileError names it)
        raise UsageError(str(e)) from e
    counts = ", ".join(f"{k} {n}" for k, n in summary["counts"].items())
    info(f"{summary['images']} images -> {args.out}: {counts}")
    if summary["failed"]:
        info(f"{len(summary['failed'])} of {len(images)} inputs failed")
        return 1
    return 0
