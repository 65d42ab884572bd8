"""The `uare` command: one entry point, one module per subcommand under `uare.commands`.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int` and calls
the public Python API, so the command line and the library cannot drift apart.
Exit codes: 0 success, 1 when any input failed (the rest are still processed), 2 bad usage.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Callable, Iterable, Optional

# name -> (module under uare.commands, one-line help)
COMMANDS = {
    "assess": ("assess", "score image quality (1-5), with a level and a description"),
    "compare": ("compare", "say which of two images is better, optionally against a reference"),
    "restore": ("restore", "restore or enhance images (sr, denoise, deblur, ..., auto, --analyze)"),
    "degrade": ("degrade", "make low-quality images and a JSONL manifest of degradation records"),
    "metrics": ("metrics", "PSNR/SSIM/NIQE/... over files or folders"),
    "data": ("data", "build training manifests from clean images"),
    "train": ("train", "train from a YAML recipe (torchrun for several processes)"),
    "eval": ("eval", "benchmark tables, plots and a gallery (sr, restore, iqa, monotonic)"),
    "serve": ("serve", "a local web page for assess and restore"),
}


class UsageError(Exception):
    """Bad usage of a command: exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="uare", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"uare {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            mod = importlib.import_module(f"uare.commands.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"uare.commands.{module}":
                raise
            p.set_defaults(_missing=name)
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "_missing", None):
        print(f"uare {args._missing}: not available in this build", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except UsageError as e:
        print(f"uare {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# ---- helpers shared by the subcommands ------------------------------------------------

def info(msg: str) -> None:
    """Human text goes to stderr so that --json output on stdout stays parseable."""
    print(msg, file=sys.stderr, flush=True)


def emit_json(obj) -> None:
    print(json.dumps(obj), flush=True)


def progress(items, desc: str, total: Optional[int] = None, **kw):
    """A progress bar on stderr; UARE_PROGRESS=0 turns it off (tests, logs)."""
    import os

    from tqdm import tqdm

    kw.setdefault("disable", os.environ.get("UARE_PROGRESS", "1") == "0")
    return tqdm(items, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True,
                leave=False, **kw)


def run_batch(items: Iterable, fn: Callable, desc: str, name: Callable = str) -> int:
    """Apply fn to each item; report failures by name and go on. Returns the exit code."""
    items = list(items)
    failures = []
    for item in progress(items, desc, total=len(items)):
        try:
            fn(item)
        except (ValueError, OSError) as e:  # ImageError is a ValueError
            msg = str(e)
            label = name(item)
            if label not in msg:
                msg = f"{label}: {msg}"
            failures.append(msg)
            info(f"failed: {msg}")
    if failures:
        info(f"{len(failures)} of {len(items)} inputs failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
