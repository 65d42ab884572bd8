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


def load_pairs(data: Path, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, pred, ref) uint8 RGB: DRealSR LR upsampled x4 with PIL bicubic, and its HR."""
    from PIL import Image

    hr_dir = data / "dev" / "drealsr_x4" / "HR"
    out = []
    for hr_path in sorted(hr_dir.glob("*.png"))[:count]:
        hr = Image.open(hr_path).convert("RGB")
        lr = Image.open(hr_dir.parent / "LR" / hr_path.name).convert("RGB")
        pred = lr.resize(hr.size, Image.BICUBIC)
        out.append((hr_path.stem, np.asarray(pred), np.asarray(hr)))
    return out


def timed(fn, items) -> tuple[list[float], float]:
    """Values of fn over items and the total seconds."""
    start = time.perf_counter()
    values = [float(fn(*item)) for item in items]
    return values, time.perf_counter() - start


REPEATS = 3  # the machine is shared: alternate the two sides and keep each one's best time


def compare(label: str, ours_fn, theirs_fn, ours_items, theirs_items, relative: bool) -> dict:
    """Run BasicSR and uare alternately on the same images; return the disagreement and
    the ratio of their best total times."""
    t_theirs = t_ours = float("inf")
    for _ in range(REPEATS):
        theirs, t = timed(theirs_fn, theirs_items)
        t_theirs = min(t_theirs, t)
        ours, t = timed(ours_fn, ours_items)
        t_ours = min(t_ours, t)
    a, b = np.array(ours), np.array(theirs)
    diff = np.abs(a - b) / np.abs(b) if relative else np.abs(a - b)
    return {"metric": label, "n": len(a), "max_diff": float(diff.max()), "relative": relative,
            "within": int((diff <= (0.01 if relative else 1e-4)).sum()),
            "mean_ours": float(a.mean()), "mean_basicsr": float(b.mean()), "speedup": t_theirs / t_ours}


def report(rows: list[dict], n_pairs: int) -> None:
    print(f"uare.metrics vs BasicSR 1.4.2 on {n_pairs} DRealSR pairs (512x512; pred = LR x4 PIL bicubic)")
    print(f"{'metric':26s} {'n':>3s} {'mean uare':>11s} {'mean BasicSR':>13s} {'max |diff|':>12s} "
          f"{'within tol':>10s} {'speed (BasicSR time / uare time)':>33s}")
    for r in rows:
        diff = f"{100 * r['max_diff']:.3f}%" if r["relative"] else f"{r['max_diff']:.2e}"
        print(f"{r['metric']:26s} {r['n']:3d} {r['mean_ours']:11.5f} {r['mean_basicsr']:13.5f} {diff:>12s} "
              f"{r['within']:>4d}/{r['n']:<5d} {r['speedup']:>27.2f}x")
    print(f"tolerances: PSNR/SSIM |diff| <= 1e-4, NIQE relative diff <= 1%; times: best of {REPEATS} alternating runs")


def run(args) -> int:
    from uare import metrics

    root = find_sdist(args.basicsr)
    if root is None:
        print("skipped: BasicSR 1.4.2 sdist not found; fetch it once with\n  pip download --no-deps "
              "--no-build-isolation --no-binary basicsr basicsr==1.4.2 -d ~/.cache/uare/basicsr")
        return 0
    data = Path(args.data)
    if not (data / "dev" / "drealsr_x4").exists():
        print(f"skipped: research data not found at {data}")
        return 0
    try:
        b_niqe, b_ps = load_basicsr(root)
    except ModuleNotFoundError as e:
        print(f"skipped: BasicSR's code needs {e.name} (pip install opencv-python-headless)")
        return 0
    pairs = load_pairs(data, args.count)
    rgb = [(p, r) for _, p, r in pairs]
    bgr = [(p[..., ::-1].copy(), r[..., ::-1].copy()) for p, r in rgb]  # BasicSR reads like cv2
    rows = []
    for y in (True, False):
        tag = "Y" if y else "RGB"
        rows.append(compare(f"PSNR-{tag} crop 4", lambda p, r: metrics.psnr(p, r, y_channel=y, crop_border=4),
                            lambda p, r: b_ps.calculate_psnr(p, r, 4, test_y_channel=y), rgb, bgr, False))
        rows.append(compare(f"SSIM-{tag} crop 4", lambda p, r: metrics.ssim(p, r, y_channel=y, crop_border=4),
                            lambda p, r: b_ps.calculate_ssim(p, r, 4, test_y_channel=y), rgb, bgr, False))
    rows.append(compare("NIQE (HR and bicubic)", metrics.niqe, lambda i: b_niqe.calculate_niqe(i, 0),
                        [(i,) for pr in rgb for i in pr], [(i,) for pr in bgr for i in pr], True))
    report(rows, len(pairs))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--basicsr", help="basicsr-1.4.2.tar.gz, its folder, or the unpacked sdist")
    parser.add_argument("--data", default=str(DATA), help="the shared research data folder")
    parser.add_argument("--count", type=int, default=24, help="number of DRealSR pairs (>= 20)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # BasicSR's scipy imports
    sys.exit(main())
