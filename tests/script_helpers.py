"""Load a repository script (scripts/, bench/) as a module, for the tests that call its
functions directly."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(rel: str, name: str | None = None):
    """`rel` from the repository root, e.g. "scripts/compare_runs.py". The module is
    registered in sys.modules under `name` (default: the file's stem): dataclasses look
    their module up there."""
    path = ROOT / rel
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
