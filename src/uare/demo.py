"""`make demo`: the main job on the bundled example image with the bundled default model.

With weights/uare-tiny present: assess the example, degrade it (noise + low light, fixed
seed), then restore the degraded copy with the simple prompt and with assessment-guided
restoration (analyse, then restore), and print where every output went with its PSNR-Y
against the clean example. Without a model folder it says how to get one and only writes
the degraded copies.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

OUT = Path("demo-output")
PRESET = "multi:lowlight+noise"


def example_image_path() -> Path:
    return Path(__file__).parent / "assets" / "example.png"


def _degraded(img, out: Path):
    from . import metrics
    from .degradations import degrade
    from .imageio import save_image

    lq, _ = degrade(img, PRESET, seed=0)
    path = save_image(lq, out / "degraded.png")
    print(f"degraded ({PRESET}, seed 0) -> {path}  PSNR-Y {metrics.psnr(lq, img):.2f} dB")
    return lq


def _run_model(model, img, lq, out: Path) -> None:
    from . import metrics
    from .imageio import save_image

    t = time.perf_counter()
    a = model.assess(img)
    print(f"assess example: score {a.score:.2f} ({a.level}) in {time.perf_counter() - t:.1f} s\n  {a.text}")
    a = model.assess(lq)
    print(f"assess degraded: score {a.score:.2f} ({a.level})\n  {a.text}")
    for name, kwargs in (("restored", {"task": "mixed"}), ("restored-analyze", {"analyze": True})):
        t = time.perf_counter()
        r = model.restore(lq, **kwargs)
        path = save_image(r.image, out / f"{name}.png")
        print(f"{name} ({r.prompt!r}) -> {path}  PSNR-Y {metrics.psnr(r.image, img):.2f} dB "
              f"in {time.perf_counter() - t:.1f} s")
        if r.text:
            text_path = out / f"{name}.txt"
            text_path.write_text(r.text + "\n")
            print(f"  analysis -> {text_path}\n  " + r.text.replace("\n", "\n  "))


def main() -> int:
    from .imageio import load_image
    from .pipeline import ModelLoadError, UARE

    src = example_image_path()
    img = load_image(src)
    print(f"example image: {src} ({img.width}x{img.height})")
    OUT.mkdir(exist_ok=True)
    lq = _degraded(img, OUT)
    try:
        model = UARE.from_pretrained()
    except ModelLoadError as e:
        print(f"no model to run: {e}", file=sys.stderr)
        return 1
    _run_model(model, img, lq, OUT)
    print(f"outputs in {OUT.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
