"""Write the tuning photos that inference settings of the tiny model are chosen on.

    python scripts/tune_photos.py -o runs     # -> runs/tune-hq, runs/tune-small

Never the dev sets: settings (decoding, views, crops) and candidate models are compared
here first. Both sets come from scikit-image's bundled public-domain photos:
- `tune-hq`: the centre 256 px crop of four photos at their native scale (the scale the
  training crops have);
- `tune-small`: five whole photos shrunk (Lanczos) to a 256 px short side, centre 256 px:
  whole scenes in 256 px, the dense content of web photos and ImageNet that a model
  trained at native scale can read as degradation.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from PIL import Image

HQ = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
SMALL = HQ + ("motorcycle_left.png",)
SIDE = 256


def _centre(im: Image.Image, side: int) -> Image.Image:
    x, y = (im.width - side) // 2, (im.height - side) // 2
    return im.crop((x, y, x + side, y + side))


def write(out: Path) -> list[Path]:
    import skimage.data

    src = Path(os.path.dirname(skimage.data.__file__))
    written = []
    for folder, names, shrink in (("tune-hq", HQ, False), ("tune-small", SMALL, True)):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            im = Image.open(src / name).convert("RGB")
            if shrink:
                s = SIDE / min(im.size)
                im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
            path = out / folder / f"{Path(name).stem}.png"
            _centre(im, SIDE).save(path)
            written.append(path)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="runs", help="folder that receives tune-hq/ and tune-small/")
    args = ap.parse_args(argv)
    for p in write(Path(args.out)):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
