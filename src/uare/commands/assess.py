"""`uare assess IMAGE... [--model DIR] [--json]`: a 1-5 score, a level and a description.

Also home of the options and model loading that `compare` and `restore` share.
"""
from __future__ import annotations

from pathlib import Path

from ..cli import UsageError, emit_json, info, run_batch


def add_model_arguments(parser, json: bool = True) -> None:
    parser.add_argument("--model", metavar="DIR", default=None,
                        help="model folder (default: the bundled model)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda (default: cuda when available)")
    if json:
        parser.add_argument("--json", action="store_true",
                            help="print one JSON object per input on stdout (human text goes to stderr)")


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of them")
    add_model_arguments(parser)


def open_model(args):
    """UARE.from_pretrained for the command line: a missing or broken model is bad usage."""
    from ..pipeline import UARE, ModelLoadError

    try:
        return UARE.from_pretrained(args.model, device=args.device)
    except ModelLoadError as e:
        raise UsageError(str(e)) from e


def input_files(inputs: list[str]) -> list[Path]:
    """Files and folders -> files; a folder without images is bad usage, a missing file
    is a failed input (reported with the batch)."""
    from ..imageio import expand_inputs

    try:
        files = expand_inputs(inputs)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if not files:
        raise UsageError("no images found in the inputs")
    return files


def reporting_failures(fn, as_json: bool, key: str = "image"):
    """Wrap a per-input function so that --json also gets an error object per failure."""
    def wrapped(path):
        try:
            return fn(path)
        except (ValueError, OSError) as e:
            if as_json:
                emit_json({key: str(path), "error": str(e)})
            raise
    return wrapped


def run(args) -> int:
    files = input_files(args.images)
    model = open_model(args)

    def one(path: Path) -> None:
        a = model.assess(path)
        if args.json:
            emit_json({"image": str(path), "score": round(a.score, 4), "level": a.level, "text": a.text})
        else:
            print(f"{path}\t{a.score:.2f}\t{a.level}\t{a.text}", flush=True)

    code = run_batch(files, reporting_failures(one, args.json), "assess")
    if not args.json and code == 0 and len(files) > 1:
        info(f"assessed {len(files)} images")
    return code
