"""The best PSNR a model restoring in this autoencoder's latent space could reach.

A restorer that predicts latents can at best predict the clean image's own latent. This
measures what that perfect prediction would give, per image, for the two ways the
pipeline decodes (InferenceConfig.residual_decode):

  direct    D(E(clean))
  residual  input + D(E(clean)) - D(E(input))

and the input's own PSNR. Where the residual ceiling is below the input, no training of
the transformer can beat the input in that latent space: the autoencoder is the limit.
PSNR on Y (BT.601) with `--crop` pixels cut from each side, as `uare eval`.

    python scripts/latent_ceiling.py --model weights/uare-tiny --lq runs/eval/inputs/single_jpeg \
        --hq ../shared/data/dev/set5_x4/HR
    python scripts/latent_ceiling.py --lq DEV/drealsr_x4/LR --hq DEV/drealsr_x4/HR   # x4: bicubic input

LQ and HQ files pair by stem; a smaller LQ image is brought to the HQ size with bicubic
(the sr task's input). Sides are cut to a multiple of the autoencoder's stride.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from uare.degradations.ops import pil_to_tensor, tensor_to_pil
from uare.imageio import list_images, load_image
from uare.metrics.psnr_ssim import psnr as psnr_y


def _tensor(img: Image.Image) -> torch.Tensor:
    return pil_to_tensor(img) * 2 - 1       # the autoencoder's [-1, 1]


@torch.inference_mode()
def ceilings(ae, lq: Image.Image, hq: Image.Image, stride: int, psnr) -> dict[str, float]:
    if lq.size != hq.size:
        lq = lq.resize(hq.size, Image.BICUBIC)
    w, h = hq.width // stride * stride, hq.height // stride * stride
    lq, hq = lq.crop((0, 0, w, h)), hq.crop((0, 0, w, h))
    x, y = _tensor(lq), _tensor(hq)
    dec_y = ae.decode(ae.encode(y, sample=False))
    dec_x = ae.decode(ae.encode(x, sample=False))
    return {"input": psnr(lq, hq), "direct": psnr(tensor_to_pil((dec_y + 1) / 2), hq),
            "residual": psnr(tensor_to_pil((x + dec_y - dec_x + 1) / 2), hq)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the bundled uare-tiny)")
    ap.add_argument("--lq", type=Path, required=True, help="degraded images (or LR for x4)")
    ap.add_argument("--hq", type=Path, required=True, help="clean images, same stems")
    ap.add_argument("--crop", type=int, default=0, help="pixels cut from each side before PSNR")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)

    from uare import UARE

    pipe = UARE.from_pretrained(args.model) if args.model else UARE.from_pretrained()
    ae = pipe.model.autoencoder.float().eval()
    stride = pipe.cfg.pixels_per_latent_token
    psnr = lambda a, b: float(psnr_y(np.asarray(a), np.asarray(b), crop_border=args.crop))
    clean = {p.stem: p for p in list_images(args.hq)}
    pairs = [(p, clean[p.stem]) for p in list_images(args.lq) if p.stem in clean]
    if not pairs:
        raise SystemExit(f"no file of {args.lq} has a same-stem partner in {args.hq}")
    rows = [ceilings(ae, load_image(a), load_image(b), stride, psnr) for a, b in pairs[:args.limit or None]]
    print(f"{args.lq}: {len(rows)} images, PSNR-Y (dB)")
    print("| | input | ceiling, direct | ceiling, residual | images whose residual ceiling is above the input |")
    print("|---|---|---|---|---|")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    above = sum(r["residual"] > r["input"] for r in rows)
    print(f"| mean | {mean['input']:.2f} | {mean['direct']:.2f} | {mean['residual']:.2f} | {above} of {len(rows)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
