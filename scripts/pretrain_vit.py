"""Teach the tiny model's ViT to see degradations before the language side must read them.

    python scripts/pretrain_vit.py --model runs/tiny/stage2-unified/final -o runs/tiny/vit \
        [--minutes 12] [--data ../shared/data/train]

Bagel's ViT arrives pretrained (SigLIP); the tiny model's starts from random weights and
learns only through the language loss, where templated text is cheaper to fit than the
image: after stage 2 its assessments did not depend on the image at all (SRCC 0.01). This
step trains the ViT (from --model's weights) with a small head that regresses the
severity of every degradation type of a random preset applied to a random 128 px crop
of a training photo (clean crops included), then writes a copy of --model with the new
ViT weights. The head is thrown away; stage 2 then goes on from that folder.

With --pairs F, a fraction F of each batch is instead pairs of one crop at two strengths
of one single degradation (--pair-types), and a margin loss asks the head to order each
pair: the question the monotonicity check asks (is this copy worse than that one?), with
the content held fixed so it cannot stand in for the answer.

With --quality W the head also has one quality output, trained (weight W) to the
pseudo-opinion law of the IQA data, prod(1 - severity) (1 = clean), and in the pairs to
rank the weaker copy higher whatever the type: one direction that falls with every
degradation, which is what a single score must read. Per-type outputs can order noise and
blur on one axis with opposite signs (noise adds high-frequency energy, blur removes it);
no linear reader turns such an axis into a score monotone in both
(`scripts/iqa_diagnostics.py`, "one probe for all types").

Held-out check: the Spearman correlation between predicted and true severity, per type,
on scikit-image's public-domain photos with fixed seeds (never trained on); with pairs,
also the mean within-photo correlation over five strengths (0 to 1) of each pair type.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uare.data.build import MULTI_PRESETS, SINGLE_TYPES
from uare.data.dataset import zoom_region
from uare.data.packing import pixels
from uare.degradations import degrade
from uare.imageio import list_images, load_image
from uare.model import UAREModel
from uare.model.vit import patchify

TYPES = SINGLE_TYPES + ("downsample",)
CROP = 128


def _region(photos: list, rng: random.Random, crop: int, phase: bool, rescale: float = 1.0):
    """A random crop; with `phase`, 8 px larger, for _cut to trim after degrading; with
    rescale < 1, cut larger and shrunk (uare.data.dataset.zoom_region, DataConfig.rescale)."""
    side = crop + 8 * phase
    a = photos[rng.randrange(len(photos))]
    r = zoom_region(rng, side, rescale, min(a.size))
    y, x = rng.randrange(a.height - r + 1), rng.randrange(a.width - r + 1)
    out = a.crop((x, y, x + r, y + r))
    return out if r == side else out.resize((side, side), resample=3)


def _cut(images: list, rng: random.Random, crop: int, phase: bool) -> list:
    """With `phase`, the same random 0-7 px offset out of each degraded region: JPEG's 8 px
    block grid (anchored where the degradation was applied) then falls anywhere relative
    to the ViT's patches, as in a crop of a real JPEG file, instead of always on patch
    borders (at view_scale 2 a patch covers exactly one block)."""
    if not phase:
        return images
    dy, dx = rng.randrange(8), rng.randrange(8)
    return [im.crop((dx, dy, dx + crop, dy + crop)) for im in images]


def sample(photos: list, rng: random.Random, seed: int, crop: int = CROP, phase: bool = False,
           rescale: float = 1.0):
    """(crop after a random preset, severity vector over TYPES)."""
    img = _region(photos, rng, crop, phase, rescale)
    u = rng.random()
    preset = (None if u < 0.2 else f"single:{rng.choice(SINGLE_TYPES)}" if u < 0.6
              else rng.choice(MULTI_PRESETS) if u < 0.85 else "realesrgan")
    target = np.zeros(len(TYPES), np.float32)
    if preset is None:
        return _cut([img], rng, crop, phase)[0], target
    out, rec = degrade(img, preset, seed=seed)
    if out.size != img.size:  # x4 presets: back to the grid, as the training samples do
        out = out.resize(img.size, resample=3)
    for t, s in rec["severity"].items():
        if t in TYPES:
            target[TYPES.index(t)] = s
    return _cut([out], rng, crop, phase)[0], target


def pair(photos: list, rng: random.Random, seed: int, types, crop: int = CROP, phase: bool = False,
         rescale: float = 1.0):
    """One crop at two strengths of one single degradation: (weak, strong, type index)."""
    img = _region(photos, rng, crop, phase, rescale)
    t = rng.choice(types)
    lo, hi = sorted(rng.sample(range(5), 2))
    out = [img if k == 0 else degrade(img, f"single:{t}:{k / 4:g}", seed=seed)[0] for k in (lo, hi)]
    out = _cut(out, rng, crop, phase)
    return out[0], out[1], TYPES.index(t), lo / 4, hi / 4


def make_batch(photos: list, seed: int, size: int, n_pairs: int, pair_types, crop: int = CROP,
               phase: bool = False, rescale: float = 1.0):
    """One step's crops, severity targets and pair types, a function of `seed` alone (so
    the same with or without worker processes): size - 2 n_pairs random presets, then
    n_pairs same-crop pairs, weak copy first."""
    rng = random.Random(seed)
    batch = [sample(photos, rng, rng.getrandbits(31), crop, phase, rescale) for _ in range(size - 2 * n_pairs)]
    kinds = []
    for _ in range(n_pairs):
        weak, strong, k, lo, hi = pair(photos, rng, rng.getrandbits(31), pair_types, crop, phase, rescale)
        for im, s in ((weak, lo), (strong, hi)):   # each copy also regresses its own severity
            target = np.zeros(len(TYPES), np.float32)
            target[k] = s
            batch.append((im, target))
        kinds.append(k)
    return [im for im, _ in batch], np.stack([t for _, t in batch]), kinds


_PHOTOS: list = []


def _load_photos(paths, crop: int) -> list:
    return [p for p in map(load_image, paths) if min(p.size) >= crop]


def _worker_init(paths, crop: int) -> None:
    torch.set_num_threads(1)
    _PHOTOS[:] = _load_photos(paths, crop)


def _worker_batch(args):
    return make_batch(_PHOTOS, *args)


def batches(photos, paths, seed: int, size: int, n_pairs: int, pair_types, crop: int, workers: int,
            phase: bool = False, rescale: float = 1.0):
    """Endless stream of make_batch results; with workers, built `2 * workers` steps ahead
    in spawned processes (the degradations cost more than a GPU step of this ViT)."""
    import itertools

    jobs = ((seed * 1_000_003 + step, size, n_pairs, pair_types, crop, phase, rescale) for step in itertools.count())
    if not workers:
        yield from (make_batch(photos, *j) for j in jobs)
        return
    import collections
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # an executor, not a Pool: a worker that cannot start raises here instead of hanging
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(paths, crop + 8 * phase)) as pool:
        ahead = collections.deque(pool.submit(_worker_batch, next(jobs)) for _ in range(2 * workers))
        try:
            while True:
                ahead.append(pool.submit(_worker_batch, next(jobs)))
                yield ahead.popleft().result()
        finally:
            for f in ahead:
                f.cancel()


def patches_of(images: list, cfg, device=None):
    """The ViT's input for crops, as the model sees them (cfg: its ViTConfig, view scale included)."""
    ps, pos = [], []
    for im in images:
        p, q = patchify(pixels(im), cfg)
        ps.append(p)
        pos.append(q)
    return torch.cat(ps).to(device), torch.cat(pos).to(device), [p.shape[0] for p in ps]


class Probe(torch.nn.Module):
    def __init__(self, vit, dim: int, quality: bool = False):
        super().__init__()
        self.vit, self.head = vit, torch.nn.Linear(dim, len(TYPES) + int(quality))

    def forward(self, patches, pos, seqlens):
        h = self.vit(patches, pos, seqlens)
        pooled = torch.stack([s.mean(0) for s in torch.split(h, seqlens)])
        return torch.sigmoid(self.head(pooled))


def heldout(seed: int = 0, n_per: int = 24, crop: int = CROP):
    from skimage import data

    photos = [load_image(getattr(data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    rng = random.Random(seed)
    return [sample(photos, rng, 10_000 + i, crop) for i in range(n_per * len(photos))]


@torch.no_grad()
def within_photo(probe, cfg, types, crop: int = CROP, quality: bool = False) -> dict:
    """Mean over the held-out photos of SRCC(strength, predicted severity), five strengths."""
    from scipy.stats import spearmanr
    from skimage import data

    probe.eval()
    out = {}
    for t in types:
        rhos = []
        for j, n in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
            im = load_image(getattr(data, n)())
            im = im.crop(((im.width - crop) // 2, (im.height - crop) // 2,
                          (im.width + crop) // 2, (im.height + crop) // 2))
            ims = [im] + [degrade(im, f"single:{t}:{k / 4:g}", seed=20_000 + j)[0] for k in range(1, 5)]
            pred = probe(*patches_of(ims, cfg))
            # the quality output falls as the strength rises; the type's own output rises
            pred = -pred[:, len(TYPES)] if quality else pred[:, TYPES.index(t)]
            rho = spearmanr(range(5), pred.numpy())[0]
            rhos.append(0.0 if np.isnan(rho) else float(rho))
        out[t] = round(float(np.mean(rhos)), 3)
    probe.train()
    return out


@torch.no_grad()
def evaluate(probe, items, cfg) -> dict:
    from scipy.stats import spearmanr

    probe.eval()
    pred = probe(*patches_of([im for im, _ in items], cfg)).numpy()
    probe.train()
    true = np.stack([t for _, t in items])
    with warnings.catch_warnings():  # a type absent from the held-out draw gives nan, said as such
        warnings.simplefilter("ignore")
        return {t: round(float(spearmanr(pred[:, i], true[:, i])[0]), 3) for i, t in enumerate(TYPES)}


def quality_target(severity: torch.Tensor) -> torch.Tensor:
    """prod(1 - s) over the types: the pseudo-opinion law of uare.data.iqa (1 = clean)."""
    return torch.prod(1.0 - severity, dim=-1, keepdim=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--data", default="../shared/data/train")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: by --minutes only)")
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cuda or cpu")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes that build the batches ahead (for a GPU; 0 on 2 CPU cores)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=CROP, help="crop side (the tiny model trains on 128)")
    ap.add_argument("--check-crop", type=int, default=0,
                    help="crop side of the held-out checks (0: --crop; the tiny model assesses 128)")
    ap.add_argument("--view-scale", type=int, default=0,
                    help="set the model's vit.view_scale (the ViT sees images up-sampled this many "
                         "times, nearest) and train at it; 0: keep the model's")
    ap.add_argument("--grid-phase", action="store_true",
                    help="cut every training crop at a random 0-7 px offset after degrading (_cut)")
    ap.add_argument("--rescale", type=float, default=1.0,
                    help="cut each crop from a region up to 1/R larger, shrunk (DataConfig.rescale); 1: native scale")
    ap.add_argument("--heldout", type=int, default=24, help="held-out crops per photo")
    ap.add_argument("--pairs", type=float, default=0.0, help="fraction of each batch as same-crop pairs")
    ap.add_argument("--pair-types", default="noise,blur,jpeg")
    ap.add_argument("--margin", type=float, default=0.1, help="of the pair loss, in severity units")
    ap.add_argument("--quality", type=float, default=0.0,
                    help="weight of a shared quality output (module docstring); 0: none")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    model = UAREModel.from_pretrained(args.model)
    cfg = model.cfg.vit
    if args.view_scale:
        cfg.view_scale = args.view_scale   # saved with the model: every later use of the ViT sees this view
        cfg.validate()
    q = args.quality > 0
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    probe = Probe(model.vit, cfg.hidden_size, quality=q)
    opt = torch.optim.AdamW(probe.parameters(), lr=args.lr, weight_decay=0.0)
    paths = list_images(Path(args.data), recursive=True)
    photos = _load_photos(paths, args.crop + 8 * args.grid_phase)
    if not photos:
        raise SystemExit(f"{args.data}: no photo of at least {args.crop} px a side")
    if not 0.0 < args.rescale <= 1.0:
        raise SystemExit(f"--rescale must be in (0, 1], got {args.rescale}")
    cc = args.check_crop or args.crop
    test = heldout(n_per=args.heldout, crop=cc)
    pair_types = [t for t in args.pair_types.split(",") if t]
    if any(t not in SINGLE_TYPES for t in pair_types):
        raise SystemExit(f"--pair-types: choose from {', '.join(SINGLE_TYPES)}")
    print("held-out SRCC before:", json.dumps(evaluate(probe, test, cfg)), flush=True)
    if args.pairs:
        print("within-photo SRCC before:", json.dumps(within_photo(probe, cfg, pair_types, cc)), flush=True)
    if q:
        print("within-photo SRCC of the quality output before:",
              json.dumps(within_photo(probe, cfg, pair_types, cc, quality=True)), flush=True)
    n_pairs = int(round(args.pairs * args.batch / 2))
    probe.to(device)
    stream = batches(photos, paths, args.seed, args.batch, n_pairs, pair_types, args.crop, args.workers,
                     args.grid_phase, args.rescale)
    t0, step = time.time(), 0
    while time.time() - t0 < 60 * args.minutes and not (args.steps and step >= args.steps):
        images, target, kinds = next(stream)
        target = torch.from_numpy(target).to(device)
        pred = probe(*patches_of(images, cfg, device))
        loss = F.mse_loss(pred[:, :len(TYPES)], target)
        if q:
            loss = loss + args.quality * F.mse_loss(pred[:, len(TYPES):], quality_target(target))
        if kinds:
            n, rows = len(images) - 2 * len(kinds), torch.arange(len(kinds), device=device)
            k = torch.tensor(kinds, device=device)
            weak, strong = pred[n::2][rows, k], pred[n + 1::2][rows, k]
            loss = loss + F.relu(args.margin - (strong - weak)).mean()
            if q:   # the weaker copy keeps more quality, whatever the type
                gap = pred[n::2, len(TYPES)] - pred[n + 1::2, len(TYPES)]
                loss = loss + args.quality * F.relu(args.margin - gap).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} ({(time.time() - t0) / 60:.1f} min)", flush=True)
    stream.close()   # stops the workers
    probe.cpu()      # the checks and the saved folder are on the CPU
    srcc = evaluate(probe, test, cfg)
    print("held-out SRCC after:", json.dumps(srcc), flush=True)
    within = within_photo(probe, cfg, pair_types, cc) if args.pairs else None
    if within:
        print("within-photo SRCC after:", json.dumps(within), flush=True)
    within_q = within_photo(probe, cfg, pair_types, cc, quality=True) if q else None
    if within_q:
        print("within-photo SRCC of the quality output after:", json.dumps(within_q), flush=True)

    out, src = Path(args.out), Path(args.model)
    model.save_pretrained(out)  # the probe trained model.vit in place; the head is not saved
    if (src / "inference.json").exists():
        shutil.copy2(src / "inference.json", out / "inference.json")
    (out / "vit_pretrain.json").write_text(json.dumps({"steps": step, "batch": args.batch, "lr": args.lr,
                                                       "device": str(device), "workers": args.workers,
                                                       "pairs": args.pairs, "pair_types": pair_types,
                                                       "quality": args.quality, "crop": args.crop, "grid_phase": args.grid_phase,
                                                       "rescale": args.rescale,
                                                       "view_scale": cfg.view_scale, "heldout_srcc": srcc,
                                                       "within_photo_srcc": within,
                                                       "quality_within_photo_srcc": within_q},
                                                      indent=2) + "\n")
    print(f"{out}: ViT after {step} steps", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
