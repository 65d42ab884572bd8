"""`make demo`: the main job on the bundled example image.

Until the bundled default model exists this degrades the example with a few presets and
prints each output's path and PSNR against the input.
"""
from __future__ import annotations

import sys
from pathlib import Path

OUT = Path("demo-output")


def example_image_path() -> Path:
    return Path(__file__).parent / "assets" / "example.png"


def main() -> int:
    from . import metrics
    from .degradations import degrade
    from .imageio import load_image, save_image

    src = example_image_path()
    img = load_image(src)
    print(f"example image: {src} ({img.width}x{img.height})")
    OUT.mkdir(exist_ok=True)
    for preset in ("single:noise:0.5", "single:blur:0.5", "single:jpeg:0.7", "multi:lowlight+noise",
                   "realesrgan"):
        lq, record = degrade(img, preset, seed=0)
        path = save_image(lq, OUT / f"{preset.replace(':', '_').replace('+', '-')}.png")
        ref = img if lq.size == img.size else img.resize(lq.size, resample=3)
        print(f"{preset:24s} -> {path}  PSNR-Y {metrics.psnr(lq, ref):.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
