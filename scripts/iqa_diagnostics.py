"""Where a model's quality assessment loses the degradation: in the ViT, or in the reading.

    python scripts/iqa_diagnostics.py --model weights/uare-tiny [--data ../shared/data/train] \
        [--crops 600] [--samples 40] [-o report.json]

Two checks, each cheaper than a training run, for a model whose scores do not follow the
strength of a degradation (issue 7's monotonicity target):

1. ViT: a ridge regression on the frozen, mean- and std-pooled ViT and connector outputs
   of --crops training crops (each at one of five strengths, 0 to 1, of noise, blur or
   JPEG) predicts the strength; reported is the mean within-photo Spearman correlation
   over the five strengths of the centre crop of four scikit-image photos (never trained
   on). Near 1: the features carry the strength; near 0: nothing downstream can read it.
   Then one ridge for all three types at once (what a single quality score needs) and
   the cosines between the per-type directions (`vit_probe`).
2. Reading: the teacher-forced log-likelihood of --samples synthetic IQA answers (score
   and description, fresh presets on training crops) given their own image against the
   same answer given another sample's image. A model that reads its image finds its own
   image's answer far likelier; the gap is in nats per answer.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from uare.data import iqa
from uare.data.build import draw_degradation
from uare.data.packing import pixels
from uare.degradations import degrade
from uare.imageio import list_images, load_image, write_json
from uare.model import UAREModel
from uare.model.vit import patchify

TYPES = ("noise", "blur", "jpeg")
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
HELD_OUT = ("astronaut", "coffee", "chelsea", "rocket")


def _at(img, typ: str, s: float, seed: int):
    return img if s == 0 else degrade(img, f"single:{typ}:{s:g}", seed=seed)[0]


def _crop(img, rng: random.Random, side: int):
    y, x = rng.randrange(img.height - side + 1), rng.randrange(img.width - side + 1)
    return img.crop((x, y, x + side, y + side))


@torch.no_grad()
def pooled_features(model, images) -> np.ndarray:
    v = model.cfg.vit
    ps, pos = zip(*(patchify(pixels(im), v) for im in images))
    n = ps[0].shape[0]
    patches, pos = torch.cat(ps), torch.cat(pos)
    h = model.vit(patches, pos, [n] * len(images)).view(len(images), n, -1)
    e = model.embed_vit(patches, pos, [n] * len(images)).view(len(images), n, -1)
    return torch.cat([h.mean(1), h.std(1), e.mean(1), e.std(1)], 1).float().numpy()


def _held_out(side: int) -> list:
    from skimage import data

    held = [load_image(getattr(data, n)()) for n in HELD_OUT]
    return [im.crop(((im.width - side) // 2, (im.height - side) // 2, (im.width + side) // 2,
                     (im.height + side) // 2)) for im in held]


def _training_crops(model, photos, typ: str, crops: int, side: int, rng: random.Random, seed: int):
    xs, ys = [], []
    for i in range(crops):
        s = rng.choice(STRENGTHS)
        xs.append(_at(_crop(photos[rng.randrange(len(photos))], rng, side), typ, s, seed + i))
        ys.append(s)
    return pooled_features(model, xs), np.asarray(ys)


class _Ridge:
    """Ridge regression on standardised features (with a bias column)."""

    def __init__(self, f: np.ndarray, y: np.ndarray, ridge: float):
        self.mu, self.sd = f.mean(0), f.std(0) + 1e-6
        a = self._design(f)
        self.w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y)

    def _design(self, f):
        return np.c_[(f - self.mu) / self.sd, np.ones(len(f))]

    def __call__(self, f):
        return self._design(f) @ self.w


def _within_photo(model, held, typ: str, predict) -> float:
    from scipy.stats import spearmanr

    rhos = []
    for j, im in enumerate(held):
        ft = pooled_features(model, [_at(im, typ, s, 10_000 + j) for s in STRENGTHS])
        rho = spearmanr(STRENGTHS, predict(ft))[0]
        rhos.append(0.0 if np.isnan(rho) else float(rho))
    return round(float(np.mean(rhos)), 3)


def vit_probe(model, photos, crops: int, side: int, ridge: float = 300.0, seed: int = 0) -> tuple[dict, dict, dict]:
    """Per type: a ridge trained on that type's crops alone (can the features order it?).
    "one_probe": a single ridge trained on all types' crops together to predict the
    severity of whichever degradation is present, as one quality score must; per type,
    and the cosine between the per-type directions (near -1: two types lie on one axis,
    e.g. noise adding and blur removing high-frequency energy, which no linear reader
    can turn into a score that falls with both)."""
    rng = random.Random(seed)
    held = _held_out(side)
    out, data, dirs = {}, {}, {}
    for typ in TYPES:
        data[typ] = _training_crops(model, photos, typ, crops, side, rng, seed)
        probe = _Ridge(*data[typ], ridge)
        out[typ] = _within_photo(model, held, typ, probe)
        dirs[typ] = probe.w[:-1] / probe.sd   # direction in the raw feature space
    joint = _Ridge(np.concatenate([data[t][0] for t in TYPES]), np.concatenate([data[t][1] for t in TYPES]), ridge)
    one = {typ: _within_photo(model, held, typ, joint) for typ in TYPES}
    cos = {f"{a}/{b}": round(float(dirs[a] @ dirs[b] / (np.linalg.norm(dirs[a]) * np.linalg.norm(dirs[b]))), 3)
           for i, a in enumerate(TYPES) for b in TYPES[i + 1:]}
    return out, one, cos


@torch.no_grad()
def answer_nll(model, image, question: str, answer: str) -> float:
    tok = model.tokenizer
    ctx = model.new_context()
    model.prefill_vit_image(ctx, pixels(image))
    model.prefill_text(ctx, tok.encode(question))
    logits, total = model.decode_step(ctx, tok.bos_id), 0.0
    for t in tok.encode(answer) + [tok.eos_id]:
        total -= float(torch.log_softmax(logits.float(), -1)[t])
        logits = model.decode_step(ctx, t)
    return total


def reading(model, photos, samples: int, side: int, seed: int = 0) -> dict:
    rng = random.Random(f"{seed}:reading")
    items = []
    while len(items) < samples:
        line = draw_degradation("iqa", rng)
        if line["task"] == "compare":
            continue
        img = _crop(photos[rng.randrange(len(photos))], rng, side)
        record = None
        if line["preset"]:
            img, record = degrade(img, line["preset"], seed=line["seed"])
            img = img.resize((side, side), resample=3) if img.size != (side, side) else img
        s = (iqa.description_sample(record, line["seed"]) if line["task"] == "describe"
             else iqa.synthetic_scoring_sample(record, line["seed"]))
        items.append((img, s.question, s.answer))
    own = np.array([answer_nll(model, im, q, a) for im, q, a in items])
    swapped = np.array([answer_nll(model, items[(k + 1) % len(items)][0], q, a)
                        for k, (_, q, a) in enumerate(items)])
    return {"samples": len(items), "nll_own_image": round(float(own.mean()), 3),
            "nll_other_image": round(float(swapped.mean()), 3),
            "gap_nats": round(float((swapped - own).mean()), 3),
            "own_likelier": round(float((own < swapped).mean()), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default="../shared/data/train")
    ap.add_argument("--crops", type=int, default=600, help="training crops per type for the ViT probe")
    ap.add_argument("--samples", type=int, default=40, help="IQA answers for the reading check")
    ap.add_argument("--side", type=int, default=128, help="crop side (the tiny model assesses 128 px)")
    ap.add_argument("--view-scale", type=int, default=0,
                    help="look through the ViT at this view scale instead of the model's (vit.view_scale)")
    ap.add_argument("--skip-reading", action="store_true", help="the ViT checks only")
    ap.add_argument("-o", "--out", default=None, help="also write the report as JSON here")
    args = ap.parse_args(argv)
    model = UAREModel.from_pretrained(args.model).eval()
    if args.view_scale:
        model.cfg.vit.view_scale = args.view_scale
        model.cfg.vit.validate()
    if model.tokenizer is None and not args.skip_reading:
        raise SystemExit(f"{args.model}: no tokenizer.json, so the reading check cannot run")
    photos = [p for p in map(load_image, list_images(Path(args.data), recursive=True)) if min(p.size) >= args.side]
    if not photos:
        raise SystemExit(f"{args.data}: no photo of at least {args.side} px a side")
    per_type, one, cos = vit_probe(model, photos, args.crops, args.side)
    report = {"model": args.model, "view_scale": model.cfg.vit.view_scale, "vit_probe_within_photo_srcc": per_type,
              "one_probe_within_photo_srcc": one, "probe_direction_cosine": cos}
    print("ViT probe, within-photo SRCC:", json.dumps(per_type), flush=True)
    print("one probe for all types:", json.dumps(one), "direction cosines:", json.dumps(cos), flush=True)
    if not args.skip_reading:
        report["reading"] = reading(model, photos, args.samples, args.side)
        print("reading:", json.dumps(report["reading"]), flush=True)
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
