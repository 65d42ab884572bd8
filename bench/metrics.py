"""uare.metrics side by side with BasicSR 1.4.2 (an independent implementation).

BasicSR's `niqe.py` and `psnr_ssim.py` are loaded straight from its source distribution
by path (its package import is broken with current torchvision), with the few modules
they import stubbed. Both sides score the same images in this process; the script prints
the largest disagreement and each side's time, as a ratio against BasicSR.

Getting the sdist once (needs the package index; nothing is fetched at run time):
    pip download --no-deps --no-build-isolation --no-binary basicsr basicsr==1.4.2 \
        -d ~/.cache/uare/basicsr
The script looks for basicsr-1.4.2.tar.gz (or an unpacked basicsr-1.4.2/ folder) in
--basicsr PATH, $UARE_BASICSR_SDIST, ~/.cache/uare/basicsr and /tmp/basicsr, and exits
with a message (code 0, "skipped") when none is there. Needs OpenCV (the `eval` extra),
which BasicSR's code imports.

Usage: python bench/metrics.py [--basicsr PATH] [--data DIR] [--count 24]
Run it under `flock /tmp/uare-cpu.lock` on shared machines.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tarfile
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SDIST = "basicsr-1.4.2"
SEARCH = [os.environ.get("UARE_BASICSR_SDIST"), Path.home() / ".cache" / "uare" / "basicsr", "/tmp/basicsr"]
DATA = ROOT.parent / "shared" / "data"


def find_sdist(given: str | None) -> Path | None:
    """The unpacked basicsr-1.4.2 folder, unpacking the tarball to a temp dir if needed."""
    for cand in [given, *SEARCH]:
        if not cand:
            continue
        p = Path(cand).expanduser()
        for folder in (p, p / SDIST):
            if (folder / "basicsr" / "metrics" / "niqe.py").exists():
                return folder
        for tar in ([p] if p.is_file() else sorted(p.glob(f"{SDIST}.tar.gz")) if p.is_dir() else []):
            out = Path(tempfile.mkdtemp(prefix="uare-basicsr-"))
            with tarfile.open(tar) as t:
                members = [m for m in t.getmembers() if "/basicsr/metrics/" in m.name or "/basicsr/utils/" in m.name]
                t.extractall(out, members=members, filter="data")
            return out / SDIST
    return None


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_basicsr(root: Path):
    """(niqe module, psnr_ssim module) of BasicSR, with its package imports stubbed."""
    pkg = root / "basicsr"
    registry = types.SimpleNamespace(register=lambda *a, **k: (lambda f: f))
    for name in ("basicsr", "basicsr.metrics", "basicsr.utils"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["basicsr.utils.registry"] = types.SimpleNamespace(METRIC_REGISTRY=registry)
    color = _load("basicsr.utils.color_util", pkg / "utils" / "color_util.py")
    sys.modules["basicsr.utils"].bgr2ycbcr = color.bgr2ycbcr
    _load("basicsr.utils.matlab_functions", pkg / "utils" / "matlab_functions.py")
    _load("basicsr.metrics.metric_util", pkg / "metrics" / "metric_util.py")
    return _load("basicsr.metrics.niqe", pkg / "metrics" / "niqe.py"), \
        _load("basicsr.metrics.psnr_ssim", pkg / "metrics" / "psnr_ssim.py")
