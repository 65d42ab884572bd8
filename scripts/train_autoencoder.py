"""Train the tiny model's autoencoder (the step before stage 1), resumably.

    python scripts/train_autoencoder.py recipes/tiny/autoencoder.yaml [--set key=value ...]
        [--max-minutes M] [--eval-only]

Plain L1 reconstruction through the sampled posterior with a tiny KL term (so the
encoder learns a near-deterministic posterior: the model samples it in training and
inference, as Bagel does). After training, `scale_factor`/`shift_factor` are set from the
latent statistics of the training crops so the flow model sees unit-variance latents.

State lives in OUT_DIR/state/ (model + AdamW moments as safetensors, step in JSON, written
atomically); a killed run restarted with the same command goes on from there. The final
autoencoder is OUT_DIR/ae.safetensors + OUT_DIR/ae_config.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Optional
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file

from uare.imageio import list_images, load_image
from uare.model.autoencoder import Autoencoder
from uare.model.config import AutoencoderConfig


@dataclass
class AERecipe:
    vae: dict = field(default_factory=dict)      # AutoencoderConfig overrides
    train_dirs: list = field(default_factory=lambda: ["../shared/data/train"])
    eval_dirs: list = field(default_factory=lambda: ["../shared/data/dev/set5_x4/HR",
                                                     "../shared/data/dev/drealsr_x4/HR"])
    eval_limit: int = 15          # images from the dev folders, centre crops up to eval_crop
    eval_crop: int = 256
    crop: int = 96
    batch: int = 8
    lr: float = 3.0e-4
    # constant lr until decay_from, then linear to lr * lr_end_ratio at `steps`: the constant
    # phase's dev PSNR swung by 3 dB between checkpoints (log.jsonl), the decay settles it
    decay_from: Optional[int] = None
    lr_end_ratio: float = 0.05
    kl_weight: float = 1.0e-6
    steps: int = 4000
    every: int = 100              # checkpoint and log interval
    seed: int = 0
    threads: int = 2
    out_dir: str = "runs/tiny/autoencoder"
    # start from a trained autoencoder: a model folder (config.json + ae.safetensors) or an
    # autoencoder folder (ae_config.json + ae.safetensors); its shape replaces `vae`
    init: str = ""
    # false: train the decoder alone. The encoder, and so every latent the flow model was
    # trained on, stays bit for bit, so a sharper decoder drops into a trained model
    train_encoder: bool = True
    device: str = "auto"          # auto: cuda when there is one


def lr_at(r: AERecipe, step: int, time_frac: float = 0.0) -> float:
    """Constant, then linear decay from decay_from to `steps`; with a time box
    (--time-box) the decay also follows the fraction of the time spent, whichever is further."""
    if r.decay_from is None or step < r.decay_from:
        return r.lr
    frac = min(1.0, max((step - r.decay_from) / max(1, r.steps - r.decay_from), time_frac))
    return r.lr * (1.0 - frac * (1.0 - r.lr_end_ratio))


def load_recipe(path: str, sets: list[str]) -> AERecipe:
    d = yaml.safe_load(Path(path).read_text()) or {}
    for s in sets:
        key, _, value = s.partition("=")
        node = d
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value)
    known = set(AERecipe.__dataclass_fields__)
    bad = [k for k in d if k not in known]
    if bad:
        raise ValueError(f"{path}: unknown keys {bad}; known: {sorted(known)}")
    return AERecipe(**d)


def load_images(dirs: list[str], min_side: int) -> list[np.ndarray]:
    """All images under dirs as HxWx3 uint8 (small sets: they fit in memory)."""
    out = []
    for d in dirs:
        for p in list_images(Path(d), recursive=True):
            a = np.asarray(load_image(p))
            if min(a.shape[:2]) >= min_side:
                out.append(a)
    if not out:
        raise ValueError(f"no images of at least {min_side} px a side under {dirs}")
    return out


def random_batch(images: list[np.ndarray], n: int, crop: int, rng: random.Random) -> torch.Tensor:
    """(n, 3, crop, crop) in [-1, 1]: random crops with flips and 90-degree turns."""
    out = []
    for _ in range(n):
        a = images[rng.randrange(len(images))]
        y, x = rng.randrange(a.shape[0] - crop + 1), rng.randrange(a.shape[1] - crop + 1)
        c = a[y:y + crop, x:x + crop]
        c = np.rot90(c, rng.randrange(4))
        out.append(c[:, ::-1] if rng.random() < 0.5 else c)
    x = torch.from_numpy(np.ascontiguousarray(np.stack(out))).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def eval_images(r: AERecipe, f: int) -> list[torch.Tensor]:
    """Centre crops (multiple of the downsampling) of the first eval_limit dev images."""
    out = []
    for d in r.eval_dirs:
        for p in sorted(list_images(Path(d)))[: r.eval_limit]:
            a = np.asarray(load_image(p))
            h, w = (min(s, r.eval_crop) // f * f for s in a.shape[:2])
            y, x = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
            t = torch.from_numpy(np.ascontiguousarray(a[y:y + h, x:x + w])).permute(2, 0, 1).float()
            out.append(t[None] / 127.5 - 1.0)
    return out


@torch.no_grad()
def evaluate(ae: Autoencoder, images: list[torch.Tensor]) -> float:
    """Mean PSNR-RGB (8-bit quantised) of encode(mean) -> decode over the images."""
    ae.eval()
    vals = []
    if not images:
        return float("nan")   # no dev images given (eval_dirs: [])
    dev = next(ae.parameters()).device
    for x in images:
        x = x.to(dev)
        y = ae.decode(ae.encode(x, sample=False)).clamp(-1, 1)
        q = lambda t: torch.round((t + 1) * 127.5)
        mse = torch.mean((q(y) - q(x)) ** 2).item()
        vals.append(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))
    ae.train()
    return float(np.mean(vals))


def loss_fn(ae: Autoencoder, x: torch.Tensor, kl_weight: float,
            train_encoder: bool = True) -> tuple[torch.Tensor, float]:
    with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()):
        mean, logvar = ae.encoder(x).chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    y = ae.decoder(z)
    l1 = (y - x).abs().mean()
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).mean()
    return l1 + kl_weight * kl, float(l1.detach())


def save_state(folder: Path, ae: Autoencoder, opt: torch.optim.Optimizer, step: int) -> None:
    """model + AdamW moments + step, under a temp name then renamed (a kill leaves the old one)."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in ae.state_dict().items()}, str(tmp / "ae.safetensors"))
    names = {id(p): n for n, p in ae.named_parameters()}
    moments = {}
    for p, s in opt.state.items():
        for k, v in s.items():
            moments[f"{names[id(p)]}/{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).cpu().contiguous()
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step}))
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        folder.rename(old)
        tmp.rename(folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(folder)


def load_state(folder: Path, ae: Autoencoder, opt: torch.optim.Optimizer) -> int:
    if not (folder / "state.json").exists():
        return 0
    ae.load_state_dict(load_file(str(folder / "ae.safetensors")))
    moments = load_file(str(folder / "optimizer.safetensors"))
    for n, p in ae.named_parameters():
        if f"{n}/exp_avg" in moments:
            opt.state[p] = {"step": moments[f"{n}/step"],
                            **{k: moments[f"{n}/{k}"].to(p.device) for k in ("exp_avg", "exp_avg_sq")}}
    return int(json.loads((folder / "state.json").read_text())["step"])


@torch.no_grad()
def latent_stats(ae: Autoencoder, images: list[np.ndarray], crop: int, n: int = 64) -> tuple[float, float]:
    """(mean, std) of raw posterior means over n training crops: shift and 1/scale."""
    rng = random.Random(1234)
    dev = next(ae.parameters()).device
    zs = [ae.encoder(random_batch(images, 8, crop, rng).to(dev)).chunk(2, dim=1)[0] for _ in range(n // 8)]
    z = torch.cat(zs)
    return float(z.mean()), float(z.std())


def init_config(folder: str) -> dict:
    """The autoencoder shape (with its latent scale and shift) of a model or autoencoder folder."""
    f = Path(folder)
    if (f / "config.json").exists():
        return json.loads((f / "config.json").read_text())["vae"]
    if (f / "ae_config.json").exists():
        return json.loads((f / "ae_config.json").read_text())["config"]
    raise ValueError(f"{folder}: no config.json or ae_config.json to start the autoencoder from")


def finish(r: AERecipe, ae: Autoencoder, cfg: AutoencoderConfig, train_imgs, step: int, psnr: float) -> None:
    if r.train_encoder:  # a frozen encoder keeps its latents, so its scale and shift stay
        shift, std = latent_stats(ae, train_imgs, r.crop)
        cfg.shift_factor, cfg.scale_factor = round(shift, 4), round(1.0 / std, 4)
    out = Path(r.out_dir)
    save_file({k: v.detach().cpu().contiguous() for k, v in ae.state_dict().items()}, str(out / "ae.safetensors.tmp"))
    os.replace(out / "ae.safetensors.tmp", out / "ae.safetensors")
    info = {"config": asdict(cfg), "steps": step, "eval_psnr_rgb": round(psnr, 3),
            "params": sum(p.numel() for p in ae.parameters())}
    (out / "ae_config.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop (checkpointed) after this long")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--time-box", action="store_true",
                    help="with --max-minutes: decay the lr over the time after decay_from and "
                         "finish (write ae.safetensors) when the time is up, for a fixed-length job")
    args = ap.parse_args(argv)
    r = load_recipe(args.recipe, args.set)
    torch.set_num_threads(r.threads)
    torch.manual_seed(r.seed)
    vae = init_config(r.init) if r.init else r.vae
    cfg = AutoencoderConfig(**{k: tuple(v) if k == "ch_mult" else v for k, v in vae.items()})
    cfg.validate()
    ae = Autoencoder(cfg)
    if r.init:
        ae.load_state_dict(load_file(str(Path(r.init) / "ae.safetensors")))
    ae.encoder.requires_grad_(r.train_encoder)
    device = torch.device("cuda" if r.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if r.device == "auto" else r.device))
    ae.to(device)
    opt = torch.optim.AdamW([p for p in ae.parameters() if p.requires_grad], lr=r.lr, weight_decay=0.0)
    out = Path(r.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step = load_state(out / "state", ae, opt)
    rng = random.Random(r.seed * 1000003 + step)   # a resumed run draws fresh crops
    torch.manual_seed(r.seed + step)
    train_imgs, dev = load_images(r.train_dirs, r.crop), eval_images(r, cfg.downsample)
    print(f"autoencoder {sum(p.numel() for p in ae.parameters()) / 1e6:.2f} M params, "
          f"{cfg.downsample}x down, {len(train_imgs)} train images, {len(dev)} dev crops, step {step}", flush=True)
    t0, log = time.time(), out / "log.jsonl"
    box = 60 * args.max_minutes if args.time_box and args.max_minutes else None
    t_decay = None
    while step < r.steps and not args.eval_only:
        if box and t_decay is None and r.decay_from is not None and step >= r.decay_from:
            t_decay = time.time()
        time_frac = (time.time() - t_decay) / max(1e-9, box - (t_decay - t0)) if box and t_decay else 0.0
        for group in opt.param_groups:
            group["lr"] = lr_at(r, step, time_frac)
        x = random_batch(train_imgs, r.batch, r.crop, rng).to(device, non_blocking=True)
        loss, l1 = loss_fn(ae, x, r.kl_weight, r.train_encoder)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        timed_out = args.max_minutes is not None and time.time() - t0 > 60 * args.max_minutes
        if step % r.every == 0 or step == r.steps or timed_out:
            psnr = evaluate(ae, dev)
            save_state(out / "state", ae, opt, step)
            row = {"step": step, "l1": round(l1, 5), "dev_psnr_rgb": round(psnr, 3),
                   "minutes": round((time.time() - t0) / 60, 2)}
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
        if timed_out and not box:
            return 0
        if timed_out:
            break
    finish(r, ae, cfg, train_imgs, step, evaluate(ae, dev))
    return 0


if __name__ == "__main__":
    sys.exit(main())
