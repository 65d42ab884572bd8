"""Train a pixel branch (uare.model.branch): a plain CNN that removes one degradation type.

    python scripts/train_branch.py --type jpeg --data ../shared/data/train -o runs/branch-jpeg \
        [--steps 18000] [--minutes 60] [--model weights/uare-tiny]
    python scripts/train_branch.py --type noise --camera 0.7 --residual -o runs/branch-noise
    python scripts/train_branch.py --type noise --init weights/uare-tiny --camera 0.7 --lr 5e-4 \
        -o runs/branch-noise-ft

Every step draws fresh pairs: random crops of --source px from the training photos (every
tenth photo held out), each degraded by `uare degrade`'s own `single:TYPE` preset at a
severity drawn from its seed (JPEG: quality 95-10, as the dev targets are made), and a
--crop px window of both cut at a multiple of 16 px (JPEG's grid stays where the codec put
it). With --camera, that share of the noise pairs is a camera's noise instead
(uare.degradations.camera.isp_noise: noise in the raw mosaic, through the camera's
processing and JPEG; the paper's noise preset is white), the clean side being the same trip
without noise; --clean leaves that share of the pairs undegraded (a branch asked to restore a
clean photo should leave it alone). MSE (the PSNR the targets are measured in), or with
--loss relative each crop's MSE over its input's (plus one grey level squared): plain MSE is
ruled by the heaviest crops, so a branch learns to damage nearly clean ones a little, while
the dev targets average PSNR, a log, over images. Adam with a cosine decay over --steps;
--minutes stops early. --init starts from a model folder's branch of --type (its shape).
OUT/train holds the state (safetensors) every --save-minutes and at the end, and a rerun
resumes it.

OUT/branches.safetensors: --model's branches with this one added (or replaced), in float16,
ready to copy into the model folder; OUT/val.md: PSNR-Y on fixed held-out crops, input / branch,
by severity quarter (and by source, with --camera).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from uare.degradations.camera import ISP_SHOT, isp_noise
from uare.degradations.presets import SINGLE_TYPES, degrade
from uare.imageio import atomic_write, list_images, load_image, write_text
from uare.model.branch import FILENAME, Branch, BranchConfig, load_branches, save_branches
from uare.train.checkpoint import flatten_optimizer, unflatten_optimizer

HOLD_OUT = 10          # every tenth photo
VAL_CROPS = 256
ALIGN = 16


def load_photos(folder: str, source: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    photos = list_images(folder, recursive=True)
    if not photos:
        raise SystemExit(f"{folder}: no training photos")
    arrays = [np.asarray(load_image(p)) for p in photos]
    small = [str(p) for p, a in zip(photos, arrays) if min(a.shape[:2]) < source]
    if small:
        raise SystemExit(f"{small[0]}: smaller than the {source} px crops the branch trains on")
    train = [a for i, a in enumerate(arrays) if i % HOLD_OUT]
    val = [a for i, a in enumerate(arrays) if not i % HOLD_OUT]
    return train, val


def draw_pairs(photos: list[np.ndarray], kind: str, n: int, source: int, crop: int,
               rng: np.random.Generator, camera: float = 0.0, keep: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor, list[float], list[str]]:
    """n (clean, degraded) crops, (n, 3, crop, crop) in [0, 1], their severities and
    sources ("preset"; "camera": a share `camera` of the rest, noise only; "clean": a share
    `keep` left undegraded, severity 0)."""
    clean, lq, sev, src = [], [], [], []
    for _ in range(n):
        a = photos[rng.integers(len(photos))]
        y0, x0 = rng.integers(a.shape[0] - source + 1), rng.integers(a.shape[1] - source + 1)
        hq = np.ascontiguousarray(a[y0:y0 + source, x0:x0 + source])
        if keep and rng.random() < keep:
            out = hq
            sev.append(0.0)
            src.append("clean")
        elif camera and rng.random() < camera:
            hq, out, drawn = isp_noise(hq, rng)
            lo, hi = np.log(ISP_SHOT)
            sev.append(float((np.log(drawn["shot"]) - lo) / (hi - lo)))
            src.append("camera")
        else:
            out, record = degrade(hq, f"single:{kind}", seed=int(rng.integers(1 << 30)))
            sev.append(float(record["severity"][kind]))
            src.append("preset")
        dy, dx = (int(rng.integers((source - crop) // ALIGN + 1)) * ALIGN for _ in range(2))
        clean.append(hq[dy:dy + crop, dx:dx + crop])
        lq.append(np.asarray(out)[dy:dy + crop, dx:dx + crop])
    as_t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
    return as_t(clean), as_t(lq), sev, src


def psnr_y(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, (N, 3, H, W) in [0, 1]; luma as uare.metrics (BT.601, 16-235)."""
    w = torch.tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    ya, yb = ((x.clamp(0, 1) * w).sum(1) for x in (a, b))
    return 10 * torch.log10(255.0 ** 2 / ((ya - yb) ** 2).mean(dim=(-2, -1)).clamp_min(1e-10))


@torch.no_grad()
def val_table(branch: Branch, val) -> str:
    clean, lq, sev, src = val
    out = torch.cat([branch(x) for x in lq.split(64)])
    p_in, p_out = psnr_y(lq, clean).clamp_max(100.0), psnr_y(out, clean).clamp_max(100.0)
    quarter = (torch.tensor(sev) * 4).long().clamp(0, 3)
    lines = ["| severity | crops | input | branch | above input |", "|---|---|---|---|---|"]
    rows = [(f"{q / 4:.2f}-{(q + 1) / 4:.2f}", quarter == q) for q in range(4)]
    if len(set(src)) > 1:
        for name in sorted(set(src)):
            is_src = torch.tensor([s == name for s in src])
            rows += [(f"{name} {q / 4:.2f}-{(q + 1) / 4:.2f}", is_src & (quarter == q)) for q in range(4)]
            rows.append((f"{name} all", is_src))
    for name, sel in rows + [("all", torch.ones_like(quarter, dtype=torch.bool))]:
        if sel.any():
            lines.append(f"| {name} | {int(sel.sum())} | {p_in[sel].mean():.3f} | {p_out[sel].mean():.3f} | "
                         f"{int((p_out[sel] > p_in[sel]).sum())} |")
    return "\n".join(lines) + "\n"


def save_state(folder: Path, branch: Branch, opt, step: int, seconds: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors, groups = flatten_optimizer(opt.state_dict())
    atomic_write(folder / "optimizer.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    save_branches({branch.cfg.type: branch}, folder)
    write_text(folder / "state.json", json.dumps({"step": step, "seconds": seconds, "groups": groups}) + "\n")


def relative_mse(out: torch.Tensor, clean: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """Mean over crops of MSE(out) / (MSE(input) + one grey level squared): each crop's share
    of its error left, so a nearly clean crop damaged counts as much as a noisy one left."""
    dims = (1, 2, 3)
    return ((out - clean).pow(2).mean(dims) / ((lq - clean).pow(2).mean(dims) + 255.0 ** -2)).mean()


def train(args, photos: list[np.ndarray], folder: Path) -> Branch:
    try:
        cfg = BranchConfig(args.type, channels=args.channels, layers=args.layers, residual=args.residual)
    except ValueError as e:
        raise SystemExit(str(e)) from e
    torch.manual_seed(args.seed)
    branch = Branch(cfg)
    if args.init:
        try:
            start_from = load_branches(args.init).get(args.type)
        except ValueError as e:
            raise SystemExit(str(e)) from e
        if start_from is None:
            raise SystemExit(f"--init {args.init}: has no {args.type} branch")
        branch, cfg = start_from.float().requires_grad_(True).train(), start_from.cfg
    opt = torch.optim.Adam(branch.parameters(), lr=args.lr)
    step, spent = 0, 0.0
    if (folder / "state.json").exists():   # resume
        state = json.loads((folder / "state.json").read_text())
        found = load_branches(folder).get(args.type)
        if found is None or found.cfg != cfg:
            raise SystemExit(f"{folder}: holds another branch ({found.cfg if found else 'none'}); "
                             f"use another -o or delete it")
        branch.load_state_dict(found.state_dict())
        opt.load_state_dict(unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), state["groups"]))
        step, spent = state["step"], state["seconds"]
        print(f"resuming at step {step}", file=sys.stderr)
    rng = np.random.default_rng([args.seed, step])   # a resumed run draws on, not the same crops again
    start, last_save = time.time() - spent, time.time()
    bar = tqdm(total=args.steps, initial=step, desc=f"{args.type} branch", file=sys.stderr, dynamic_ncols=True)
    while step < args.steps and time.time() - start < args.minutes * 60:
        # cosine to 2% over the steps; from --init, a 200-step warm-up first: Adam's first
        # steps move every weight by about the lr whatever its gradient, which a trained
        # branch does not need
        warm = min(1.0, (step + 1) / 200) if args.init else 1.0
        for group in opt.param_groups:
            group["lr"] = warm * args.lr * (0.02 + 0.49 * (1 + math.cos(math.pi * step / args.steps)))
        clean, lq, _, _ = draw_pairs(photos, args.type, args.batch, args.source, args.crop, rng, args.camera,
                                     args.clean)
        out = branch(lq)
        loss = relative_mse(out, clean, lq) if args.loss == "relative" else F.mse_loss(out, clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.2e}")
            bar.update(step - bar.n)
        if time.time() - last_save > args.save_minutes * 60:
            save_state(folder, branch, opt, step, time.time() - start)
            last_save = time.time()
    bar.close()
    save_state(folder, branch, opt, step, time.time() - start)
    print(f"{step} steps, {(time.time() - start) / 60:.1f} min", file=sys.stderr)
    return branch.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--type", required=True, choices=[t for t in SINGLE_TYPES if t != "downsample"])
    ap.add_argument("--data", default="../shared/data/train", help="folder of clean training photos")
    ap.add_argument("-o", "--out", required=True, help="run folder (train/, branches.safetensors, val.md)")
    ap.add_argument("--model", default="weights/uare-tiny",
                    help="model folder whose branches the output keeps ('' for none)")
    ap.add_argument("--steps", type=int, default=18000)
    ap.add_argument("--minutes", type=float, default=float("inf"), help="stop early after this long")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64, help="training window, px (a multiple of 16)")
    ap.add_argument("--source", type=int, default=64,
                    help="px of the crop degraded (>= --crop: raindrops want their surroundings)")
    ap.add_argument("--camera", type=float, default=0.0,
                    help="share of the pairs with a camera's noise instead of the preset's (noise only)")
    ap.add_argument("--clean", type=float, default=0.0, help="share of the pairs left undegraded")
    ap.add_argument("--loss", choices=["mse", "relative"], default="mse",
                    help="relative: each crop's MSE over its input's (see above)")
    ap.add_argument("--init", default="",
                    help="model or run folder whose --type branch training starts from (its shape: "
                         "--channels, --layers and --residual are not used)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--channels", type=int, default=BranchConfig.channels)
    ap.add_argument("--layers", type=int, default=BranchConfig.layers)
    ap.add_argument("--residual", action="store_true",
                    help="ResNet blocks (uare.model.branch): learns several times faster than the plain stack")
    ap.add_argument("--save-minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.camera and args.type != "noise":
        raise SystemExit("--camera is camera noise: only for --type noise")
    for flag in ("camera", "clean"):
        if not 0 <= getattr(args, flag) <= 1:
            raise SystemExit(f"--{flag} is a share in [0, 1], got {getattr(args, flag)}")
    if args.crop % ALIGN or args.source < args.crop:
        raise SystemExit(f"--crop must be a multiple of {ALIGN} and --source at least --crop")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    train_photos, val_photos = load_photos(args.data, args.source)
    branch = train(args, train_photos, out / "train")
    val = draw_pairs(val_photos, args.type, VAL_CROPS, args.source, args.crop, np.random.default_rng(12345),
                     args.camera, args.clean)
    table = val_table(branch, val)
    write_text(out / "val.md", f"# {args.type} branch, held-out crops (PSNR-Y)\n\n{table}")
    print(table)
    branches = load_branches(args.model) if args.model else {}
    branches[args.type] = branch
    save_branches(branches, out, dtype=torch.float16)   # the shipped copy; OUT/train keeps float32
    print(f"wrote {out / FILENAME} ({', '.join(sorted(branches))}); copy it into the model folder to use it",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
