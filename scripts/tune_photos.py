"""Write the tuning photos that inference settings of the tiny model are chosen on.

    python scripts/tune_photos.py -o runs     # -> runs/tune-hq, runs/tune-small, runs/tune-wide

Never the dev sets: settings (decoding, views, crops) and candidate models are compared
here first. Both sets come from scikit-image's bundled public-domain photos:
- `tune-hq`: the centre 256 px crop of four photos at their native scale (the scale the
  training crops have);
- `tune-small`: five whole photos shrunk (Lanczos) to a 256 px short side, centre 256 px:
  whole scenes in 256 px, the dense content of web photos and ImageNet that a model
  trained at native scale can read as degradation;
- `tune-wide`: more of the same photos for a tie between candidates: the left and right
  256 px of the four shrunk scenes wider than square, and the top-left 256 px of all five
  at native scale (13 images).
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


def _shrunk(im: Image.Image) -> Image.Image:
    s = SIDE / min(im.size)
    return im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)


def write(out: Path) -> list[Path]:
    import skimage.data

    src = Path(os.path.dirname(skimage.data.__file__))
    photos = {Path(n).stem: Image.open(src / n).convert("RGB") for n in SMALL}
    crops = {("tune-hq", Path(n).stem): _centre(photos[Path(n).stem], SIDE) for n in HQ}
    for k, im in photos.items():
        small = _shrunk(im)
        crops["tune-small", k] = _centre(small, SIDE)
        if small.width > SIDE:
            crops["tune-wide", f"{k}-small-left"] = small.crop((0, 0, SIDE, SIDE))
            crops["tune-wide", f"{k}-small-right"] = small.crop((small.width - SIDE, 0, small.width, SIDE))
        crops["tune-wide", f"{k}-native-tl"] = im.crop((0, 0, SIDE, SIDE))
    written = []
    for (folder, name), im in crops.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        im.save(out / folder / f"{name}.png")
        written.append(out / folder / f"{name}.png")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="runs", help="folder that receives tune-hq/, tune-small/ and tune-wide/")
    args = ap.parse_args(argv)
    for p in write(Path(args.out)):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
