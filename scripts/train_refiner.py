"""Train a model's refiner (uare.model.refiner) on the model's own restorations.

    python scripts/train_refiner.py --model weights/uare-tiny --data ../shared/data/train \
        -o runs/refiner [--batches 320] [--minutes 20] [--seed 1]

1. Pairs: random crops of the training photos at the model's tile size (128 px for the
   tiny model), each degraded by a random preset (singles, x4 down-sampling and
   Real-ESRGAN's pipeline restored as x4 SR from the bicubic up-sampling, the mixes; a
   share --camera is camera noise, uare.degradations.camera), restored by the model as
   `UARE.restore` would (the task's or the named instruction, the task's temperature,
   residual or direct decoding), eight crops of one preset a batch. A share of the crops
   whose instruction names the degradation (--dark) is darkened first (a gain of
   0.08-0.6): the training photos are mostly well exposed, and a refiner that never saw a
   dark crop amplified the model's faint pattern on dark flat photos (DRealSR, session
   19). Kept: the clean and degraded crops (uint8) and both decodings (float16), in
   shards of --shard batches under OUT/pairs, each with the model's fingerprint (so
   --pairs-from can refuse another model's); a killed run goes on from the shards it has.
   Every tenth shard is held out. A share --guided is restored by analyse-then-restore, the
   refiner told what the model's own analysis names (session 22).
2. Training: the refiner (its output layer starts at zero: at step 0 it returns the
   pipeline's pixels) learns the clean crop on random half-tile windows with flips and
   rotations, by L1, minus the mean PSNR (--loss psnr: the dev metric, but it gives heavy
   degradations little weight; session 20) or the mean root RMSE between them (--loss
   root), AdamW with a cosine decay over the time box (--noise-scales: the refiner is
   also told its input's estimated noise level, RefinerConfig.noise_scales); OUT/train
   holds its state (safetensors) after every --save-minutes and at the end, and a rerun
   resumes it. --init starts from another refiner (e.g. the model's own) instead of zero;
   --pairs-from adds other runs' shards to the training set.
3. OUT/model: a copy of --model's files with refiner.safetensors, and OUT/val.md: PSNR-Y
   per preset on the held-out pairs, input / the pipeline's pixels / refined (no colour
   fix, no mix: what the refiner itself changes), and --init's refiner where given.

--device cuda restores the pairs and trains on a GPU (the model in float32, as a CPU user
runs it; the crops stay in CPU memory and go over a batch at a time); scripts/device/
refiner.sh runs both steps on a lent GPU machine in one time-boxed call.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from uare import UARE
from uare.degradations.camera import camera_noise
from uare.degradations.presets import MIXED_COMBOS, degrade
from uare.imageio import atomic_write, list_images, load_image, write_text
from uare.model.refiner import FILENAME, Refiner, RefinerConfig, load_refiner, save_refiner
from uare.pipeline import TASK_OF_TYPE, removed_types
from uare.train.checkpoint import flatten_optimizer, unflatten_optimizer

PER_BATCH = 8
SINGLES = ("blur", "noise", "jpeg", "haze", "rain", "raindrop", "lowlight")
# the paper's nine mixes and the three others the data builder draws
MIXES = MIXED_COMBOS + (("blur", "noise", "jpeg"), ("rain", "haze"), ("noise", "jpeg"))
DARK_GAINS = (0.08, 0.6)   # log-uniform; DRealSR's darkest test photos average 0.15-0.2
# not a preset: uare.degradations.camera's noise (correlated, as a camera's pipeline leaves
# it), the clean crop replaced by its noise-free trip through the same pipeline
CAMERA = "camera:noise"
PSNR_FLOOR = 1e-5          # MSE in [-1, 1] units: 56 dB, beyond which a window stops pulling


def draw_job(rng: random.Random, skip: tuple[str, ...] = (), camera: float = 0.0
             ) -> tuple[str, str, list[str] | None]:
    """(preset, task, types named in the instruction or None for the task's own); none
    that removes a type the refiner skips (it will never run on those), but a mix with
    such a type under the plain mixed prompt stays: the refiner is not told, so it runs.
    A share `camera` of the jobs is camera noise (CAMERA) to denoise."""
    while True:
        preset, task, types = _draw(rng, camera)
        if not set(removed_types(task, types)) & set(skip):
            return preset, task, types


def _draw(rng: random.Random, camera: float = 0.0) -> tuple[str, str, list[str] | None]:
    if camera and rng.random() < camera:
        return CAMERA, "denoise", ["noise"] if rng.random() < 0.5 else None
    r = rng.random()
    if r < 0.6:
        t = rng.choice(SINGLES)
        return f"single:{t}", TASK_OF_TYPE[t], [t] if rng.random() < 0.5 else None
    if r < 0.75:
        return rng.choice(["single:downsample", "single:downsample", "realesrgan"]), "sr", None
    combo = list(rng.choice(MIXES))
    return "multi:" + "+".join(combo), "mixed", combo if rng.random() < 0.5 else None


def crop_pair(photo: Path, preset: str, rng: random.Random, crop: int,
              gain: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(clean, degraded) uint8 crops; gain < 1 darkens the clean crop before degrading it."""
    img = load_image(photo)
    if min(img.size) < crop:
        raise SystemExit(f"{photo}: smaller than the {crop} px crops the refiner trains on")
    x0, y0 = rng.randrange(img.width - crop + 1), rng.randrange(img.height - crop + 1)
    clean = img.crop((x0, y0, x0 + crop, y0 + crop))
    if gain != 1.0:
        clean = Image.fromarray((np.asarray(clean, dtype=np.float32) * gain + 0.5).astype(np.uint8))
    if preset == CAMERA:
        clean, lq = camera_noise(np.asarray(clean), np.random.default_rng(rng.randrange(1 << 30)))[:2]
        return clean, lq
    lq, _ = degrade(clean, preset, seed=rng.randrange(1 << 30))
    if lq.size != clean.size:   # x4 presets: the model restores the bicubic up-sampling, as sr does
        lq = lq.resize(clean.size, resample=3)
    return np.asarray(clean), np.asarray(lq)


def draw_gain(rng: random.Random, dark: float) -> float:
    if rng.random() >= dark:
        return 1.0
    lo, hi = DARK_GAINS
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


@torch.inference_mode()
def make_shard(pipe: UARE, photos: list[Path], seed: int, index: int, batches: int,
               skip: tuple[str, ...], dark: float = 0.0, camera: float = 0.0,
               guided: float = 0.0, analysed_skipped: bool = False) -> tuple[dict, dict]:
    rng = random.Random(seed * 1_000_003 + index)
    cols, presets, removed, gains, analysed = defaultdict(list), [], [], [], []
    for _ in range(4 * batches):   # analyses naming a skipped type are drawn again
        if len(presets) == batches * PER_BATCH:
            break
        preset, task, types = draw_job(rng, skip, camera)
        # analyse-then-restore: the refiner is told what the model's analysis names, which
        # on the tiny model is often wrong (session 21: "blur, noise, JPEG" for most mixes),
        # so it has to learn how far to trust it from the analyses themselves
        analyse = bool(guided) and preset != CAMERA and task != "sr" and rng.random() < guided
        if analyse:
            types = None
        # only where the refiner is told what it removes: a dark crop under the plain mixed
        # prompt is ambiguous (a dark photo, or low light to brighten), and darkening those
        # taught it to keep the low-light mixes dark (session 19); nor under an analysis,
        # which may name low light wrongly
        told = bool(removed_types(task, types)) and not analyse
        these = [draw_gain(rng, dark if told else 0.0) for _ in range(PER_BATCH)]
        pairs = [crop_pair(rng.choice(photos), preset, rng, pipe.tiles.tile, g) for g in these]
        clean, lq = (np.stack(c) for c in zip(*pairs))
        tiles = torch.from_numpy(lq).permute(0, 3, 1, 2).float() / 255
        # the settings restore() would use; the refiner itself stays out (it is what learns)
        job, _, _ = pipe._job(Image.fromarray(lq[0]), task, None, analyse, types, pipe.config.steps,
                              rng.randrange(1 << 30), refine=False)
        if analyse:   # one analysis shared by the batch, as by every tile of a large image
            job.text = pipe._analysis_of_whole(tiles[0], job)
            if set(job.removes()) & set(skip) and not analysed_skipped:   # it will not run there: draw another
                continue
        restored, cond = pipe._restored_latents(tiles, job)
        cols["clean"].append(torch.from_numpy(clean))
        cols["lq"].append(torch.from_numpy(lq))
        cols["decoded"].append(pipe._decode(restored).half().cpu())
        cols["decoded_input"].append(pipe._decode(cond).half().cpu())
        cols["residual"].append(torch.full((PER_BATCH,), int(job.residual), dtype=torch.uint8))
        presets += [preset] * PER_BATCH
        removed += [job.removes()] * PER_BATCH   # what the refiner is told at inference
        gains += these
        analysed += [analyse] * PER_BATCH
    if not presets:
        raise SystemExit(f"shard {index}: every analysis named a type the refiner skips ({', '.join(skip)})")
    tensors = {k: torch.cat(v).contiguous() for k, v in cols.items()}
    return tensors, {"presets": json.dumps(presets), "removed": json.dumps(removed), "gains": json.dumps(gains),
                     "analysed": json.dumps(analysed)}


def model_fingerprint(folder: Path) -> str:
    """What the pairs depend on: every file of the model folder but its refiner and card."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and f.name != FILENAME and f.suffix != ".md":
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def check_made_from(files: list[Path], fingerprint: str) -> None:
    """--pairs-from shards must be restorations by the same model; shards written before the
    fingerprint was kept (sessions 18-20) cannot be checked, which is said once."""
    unknown = 0
    for f in files:
        with safe_open(str(f), "pt") as h:
            made = (h.metadata() or {}).get("model")
        if made is None:
            unknown += 1
        elif made != fingerprint:
            raise SystemExit(f"{f}: made from another model (fingerprint {made}, --model has {fingerprint})")
    if unknown:
        print(f"warning: {unknown} --pairs-from shards carry no model fingerprint; they are assumed "
              f"to be this --model's restorations", file=sys.stderr)


def make_pairs(pipe: UARE, photos: list[Path], out: Path, shards: int, per_shard: int, seed: int,
               skip: tuple[str, ...] = (), dark: float = 0.0, fingerprint: str = "",
               camera: float = 0.0, guided: float = 0.0, analysed_skipped: bool = False,
               minutes: Optional[float] = None) -> None:
    """Shards 0..shards-1 that are not there yet; with `minutes`, no new shard is started
    after that time (a rerun makes the rest)."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(shards) if not (out / f"shard-{i:04d}.safetensors").exists()]
    start = time.time()
    for made, i in enumerate(tqdm(todo, desc="pairs (shards)", unit="shard", file=sys.stderr, dynamic_ncols=True)):
        if minutes is not None and time.time() - start > minutes * 60:
            print(f"pairs: --pairs-minutes {minutes:g} reached, {made} of {len(todo)} new shards made",
                  file=sys.stderr)
            break
        tensors, meta = make_shard(pipe, photos, seed, i, per_shard, skip, dark, camera, guided, analysed_skipped)
        meta["model"] = fingerprint
        atomic_write(out / f"shard-{i:04d}.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata=meta))


class Pairs:
    """The shards' crops: clean and degraded kept as uint8, both decodings as float16 (in
    float32, the ~13 k crops of three runs' shards would take 13 GB), made into float
    tensors in [-1, 1] a batch at a time: base (the pipeline's pixels), image, decoded,
    decoded_input, clean.

    Darkened crops whose job names no type are left out: shards made before session 20
    darkened those too, and under the plain mixed prompt a dark crop is ambiguous (a dark
    photo to keep, or low light to brighten)."""

    def __init__(self, files: list[Path], cfg: RefinerConfig):
        cols, self.presets, removed, self.gains, self.analysed = defaultdict(list), [], [], [], []
        for f in files:
            tensors = load_file(str(f))
            with safe_open(str(f), "pt") as h:
                meta = h.metadata()
            n = len(tensors["clean"])
            told = json.loads(meta["removed"])
            gains = json.loads(meta.get("gains", "null")) or [1.0] * n   # older shards: none darkened
            keep = [i for i in range(n) if gains[i] == 1.0 or told[i]]
            for k, v in tensors.items():
                cols[k].append(v[keep])
            presets = json.loads(meta["presets"])
            self.presets += [presets[i] for i in keep]
            removed += [told[i] for i in keep]
            self.gains += [gains[i] for i in keep]
            analysed = json.loads(meta.get("analysed", "null")) or [False] * n   # before session 22: none
            self.analysed += [analysed[i] for i in keep]
        self.types = cfg.encode_types(removed)
        self.clean, self.lq = torch.cat(cols["clean"]), torch.cat(cols["lq"])
        self.decoded, self.decoded_input = torch.cat(cols["decoded"]), torch.cat(cols["decoded_input"])
        self.residual = torch.cat(cols["residual"]).bool().view(-1, 1, 1, 1)

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def crop(self) -> int:
        return self.clean.shape[1]

    def batch(self, idx, box: Optional[tuple[int, int, int]] = None) -> list[torch.Tensor]:
        """[base, image, decoded, decoded_input, clean] of crops idx, cut to box = (y0, x0, side)."""
        y0, x0, side = box or (0, 0, self.crop)
        ys, xs = slice(y0, y0 + side), slice(x0, x0 + side)
        image, clean = (u8[idx, ys, xs].permute(0, 3, 1, 2).float() / 127.5 - 1 for u8 in (self.lq, self.clean))
        decoded, decoded_input = self.decoded[idx, :, ys, xs].float(), self.decoded_input[idx, :, ys, xs].float()
        # what the pipeline returns before the refiner: residual or direct decoding
        base = torch.where(self.residual[idx], image + decoded - decoded_input, decoded)
        return [base, image, decoded, decoded_input, clean]

    def window(self, idx: torch.Tensor, g: torch.Generator, side: int) -> list[torch.Tensor]:
        """Random windows (even offsets: the refiner's 2x unshuffle sees one phase), a
        random rotation and flip shared by the five images of each sample: the four inputs
        and the clean target."""
        y0, x0 = (2 * torch.randint(0, (self.crop - side) // 2 + 1, (2,), generator=g)).tolist()
        xs = self.batch(idx, (y0, x0, side))
        k, flip = int(torch.randint(4, (1,), generator=g)), bool(torch.randint(2, (1,), generator=g))
        xs = [torch.rot90(x, k, (2, 3)) for x in xs]
        return [x.flip(3) for x in xs] if flip else xs


def shard_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("shard-*.safetensors"))
    if not files:
        raise SystemExit(f"--pairs-from {folder}: no shard-*.safetensors there")
    return files


def psnr_y(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, (N, 3, H, W) in [-1, 1]; luma as uare.metrics (BT.601, 16-235)."""
    w = torch.tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1) / 255.0
    ya, yb = (16.0 + ((x.clamp(-1, 1) + 1) * 127.5 * w).sum(1) for x in (a, b))
    return 10 * torch.log10(255.0 ** 2 / ((ya - yb) ** 2).mean(dim=(-2, -1)).clamp_min(1e-10))


@torch.no_grad()
def held_out_table(refiner: Refiner, val: Pairs, init: Optional[Refiner] = None) -> str:
    """PSNR-Y by preset: input, pipeline, refined (and --init's refiner); the darkened crops
    also as a row of their own. The refiners run where their weights are."""
    refiners = ([init] if init is not None else []) + [refiner]
    parts = []
    for i in torch.arange(len(val)).split(64):
        base, image, decoded, decoded_input, clean = val.batch(i)
        outs = [image, base]
        for r in refiners:
            dev = next(r.parameters()).device
            args = [x.to(dev) for x in (base, image, decoded, decoded_input, val.types[i])]
            outs.append(r(*args).cpu())
        parts.append(torch.stack([psnr_y(o, clean) for o in outs]))
    cols = torch.cat(parts, 1)
    groups = defaultdict(list)
    for i, (p, gain, analysed) in enumerate(zip(val.presets, val.gains, val.analysed)):
        groups[p if not p.startswith("multi:") else "multi (all mixes)"].append(i)
        if gain != 1.0:
            groups["darkened crops (all presets)"].append(i)
        if analysed:
            groups["analyse-then-restore (all presets)"].append(i)
    head = "| preset | crops | input | pipeline |" + (" init |" if init is not None else "") + " refined |"
    lines = [head, "|---" * (len(cols) + 2) + "|"]
    for name in sorted(groups) + ["all"]:
        sel = torch.tensor(groups[name] if name != "all" else list(range(len(val))))
        lines.append(f"| {name} | {len(sel)} | " + " | ".join(f"{c[sel].mean():.2f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def psnr_loss(out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Minus the mean PSNR over the windows (RGB, up to a constant). The dev metric is a mean
    of per-image PSNRs; an L1 mean lets the jobs whose input is nearly clean (JPEG, raindrops,
    dark crops) count for little, and those were the ones the refiner lowered (session 19)."""
    return 10 * torch.log10(_window_mse(out, clean) + PSNR_FLOOR).mean()


def root_loss(out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The mean over windows of RMSE^(1/2): of degree 1/2 in the error, between L1 (degree
    1: a window pulls by its error) and PSNR (degree 0: by its error relative to its MSE).
    PSNR taught light camera noise but let heavy noise go, L1 the reverse (session 20). Per
    pixel, a window with 10x the error pulls as hard as the light one under L1, 1/10 as
    hard under PSNR and 1/sqrt(10) as hard here."""
    return (_window_mse(out, clean) + PSNR_FLOOR).pow(0.25).mean()


def _window_mse(out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    return (out - clean).pow(2).mean(dim=(1, 2, 3))


LOSSES = {"l1": F.l1_loss, "psnr": psnr_loss, "root": root_loss}


def save_state(folder: Path, refiner: Refiner, opt, step: int, seconds: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors, groups = flatten_optimizer(opt.state_dict())
    atomic_write(folder / "optimizer.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    save_refiner(refiner, folder)
    write_text(folder / "state.json", json.dumps({"step": step, "seconds": seconds, "groups": groups}) + "\n")


def train(train_set: Pairs, folder: Path, cfg: RefinerConfig, minutes: float, batch: int,
          lr: float, save_minutes: float, seed: int, init: Optional[Refiner] = None,
          loss_name: str = "l1", device: str = "cpu") -> Refiner:
    refiner = Refiner(cfg)
    if init is not None:
        refiner.start_from(init)
    refiner.to(device)
    opt = torch.optim.AdamW(refiner.parameters(), lr=lr, weight_decay=0.0)
    step, spent = 0, 0.0
    if (folder / "state.json").exists():   # resume
        state = json.loads((folder / "state.json").read_text())
        with safe_open(str(folder / FILENAME), "pt") as f:
            if RefinerConfig(**json.loads(f.metadata()["config"])) != cfg:
                raise SystemExit(f"{folder}: holds a refiner of another shape; use another -o or delete it")
        refiner.load_state_dict(load_file(str(folder / FILENAME)))
        opt.load_state_dict(unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), state["groups"]))
        step, spent = state["step"], state["seconds"]
        print(f"resuming at step {step} ({spent / 60:.1f} of {minutes} min)", file=sys.stderr)
    g = torch.Generator().manual_seed(seed + step)
    budget, start, last_save = minutes * 60, time.time() - spent, time.time()
    bar = tqdm(total=round(budget), initial=round(spent), desc="refiner", unit="s", file=sys.stderr,
               dynamic_ncols=True)
    while (elapsed := time.time() - start) < budget:
        for group in opt.param_groups:   # cosine to 2% over the time box
            group["lr"] = lr * (0.02 + 0.49 * (1 + math.cos(math.pi * elapsed / budget)))
        idx = torch.randint(len(train_set), (batch,), generator=g)
        # windows are cut on the CPU (the crops stay there as uint8) and moved a batch at a time
        *inputs, clean = (x.to(device, non_blocking=True) for x in train_set.window(idx, g, train_set.crop // 2))
        loss = LOSSES[loss_name](refiner(*inputs, train_set.types[idx].to(device)), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            bar.set_postfix(step=step, loss=f"{loss.item():.4f}")
            bar.update(round(elapsed) - bar.n)
        if time.time() - last_save > save_minutes * 60:
            save_state(folder, refiner, opt, step, time.time() - start)
            last_save = time.time()
    bar.close()
    save_state(folder, refiner, opt, step, time.time() - start)
    print(f"{step} steps", file=sys.stderr)
    return refiner.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="weights/uare-tiny", help="model folder to refine")
    ap.add_argument("--data", default="../shared/data/train", help="folder of clean training photos")
    ap.add_argument("-o", "--out", required=True, help="run folder (pairs/, train/, model/, val.md)")
    ap.add_argument("--batches", type=int, default=320, help=f"batches of {PER_BATCH} crops to restore")
    ap.add_argument("--shard", type=int, default=10, help="batches a shard file")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time box")
    ap.add_argument("--pairs-minutes", type=float, default=None,
                    help="start no new shard of pairs after this long (default: make all --batches)")
    ap.add_argument("--batch", type=int, default=16, help="windows a step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--channels", type=int, default=RefinerConfig.channels)
    ap.add_argument("--blocks", type=int, default=RefinerConfig.blocks)
    ap.add_argument("--skip", default="lowlight", metavar="TYPE[,TYPE...]",
                    help="degradation types whose restorations the refiner leaves alone (not "
                         "trained on; default lowlight, which the tiny model's refiner lowered); "
                         "'' for none")
    ap.add_argument("--dark", type=float, default=0.25,
                    help="share of the crops darkened before degrading (gain %g-%g, log-uniform)" % DARK_GAINS)
    ap.add_argument("--camera", type=float, default=0.0,
                    help="share of the jobs that denoise camera noise (uare.degradations.camera: "
                         "correlated, as real photos' noise is; the presets' noise is white)")
    ap.add_argument("--guided", type=float, default=0.0,
                    help="share of the jobs (not x4 SR or camera noise) restored by "
                         "analyse-then-restore, the refiner told the types the analysis names")
    ap.add_argument("--analysed-skipped", action="store_true",
                    help="keep analyse-then-restore pairs whose analysis names a --skip type, and "
                         "let the refiner run on every analysed restoration (RefinerConfig.analysed)")
    ap.add_argument("--init", metavar="FOLDER_OR_FILE",
                    help="start from this refiner (a model folder or a refiner.safetensors) "
                         "instead of zero; its shape must match --channels/--blocks")
    ap.add_argument("--noise-scales", default="", metavar="S[,S...]",
                    help="tell the refiner its input's estimated noise level at these scales "
                         "(RefinerConfig.noise_scales, e.g. 1,2); default none")
    ap.add_argument("--gate", action=argparse.BooleanOptionalAction, default=True,
                    help="learn a per-pixel share of the input too (RefinerConfig.gate)")
    ap.add_argument("--loss", choices=sorted(LOSSES), default="l1",
                    help="l1 (default, the shipped refiner's); psnr: minus the mean per-window "
                         "PSNR, the dev metric (it lifted JPEG, raindrops and light noise to or "
                         "above the input but lost 1-2 dB on heavy noise; session 20, model card); "
                         "root: the mean per-window RMSE^(1/2), between the two")
    ap.add_argument("--pairs-from", action="append", default=[], metavar="FOLDER",
                    help="also train on the shards of another run's pairs/ folder (made from the "
                         "same --model; repeatable); held-out pairs stay this run's own")
    ap.add_argument("--save-minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto",
                    help="where the model restores the pairs and the refiner trains: cpu, cuda[:N] or auto "
                         "(cuda where there is one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:   # a CPU-only torch raises AssertionError for cuda
        raise SystemExit(f"--device {args.device}: not usable here ({e})")
    out = Path(args.out)
    photos = list_images(args.data, recursive=True)
    if not photos:
        raise SystemExit(f"{args.data}: no training photos")
    # float32 on a GPU too (from_pretrained would take bfloat16 there): the pairs are the
    # restorations the refiner will follow, which a CPU user gets in float32
    pipe = UARE.from_pretrained(args.model, device=device, dtype=torch.float32)
    skip = tuple(t.strip() for t in args.skip.split(",") if t.strip())
    shards = math.ceil(args.batches / args.shard)
    for name in ("dark", "camera", "guided"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise SystemExit(f"--{name} must be in [0, 1], got {getattr(args, name)}")
    try:
        noise_scales = tuple(int(v) for v in args.noise_scales.split(",") if v.strip())
        RefinerConfig(noise_scales=noise_scales)
    except ValueError as e:
        raise SystemExit(f"--noise-scales {args.noise_scales!r}: whole numbers >= 1 ({e})")
    init = None
    if args.init:
        src = Path(args.init)
        if src.suffix == ".safetensors" and src.name != FILENAME:
            raise SystemExit(f"--init {args.init}: a refiner file is named {FILENAME}")
        init = load_refiner(src.parent if src.suffix == ".safetensors" else src)
        if init is None:
            raise SystemExit(f"--init {args.init}: no {FILENAME} there")
        if (init.cfg.channels, init.cfg.blocks, init.cfg.types) != (args.channels, args.blocks, RefinerConfig.types) \
                or init.cfg.gate > args.gate or init.cfg.noise_scales not in ((), noise_scales):
            raise SystemExit(f"--init {args.init}: a refiner of another shape ({init.cfg})")
    fingerprint = model_fingerprint(Path(args.model))
    make_pairs(pipe, photos, out / "pairs", shards, args.shard, args.seed, skip, args.dark, fingerprint,
               args.camera, args.guided, args.analysed_skipped, args.pairs_minutes)
    files = [f for i in range(shards) if (f := out / "pairs" / f"shard-{i:04d}.safetensors").exists()]
    if not files:
        raise SystemExit(f"{out / 'pairs'}: no shards made (--pairs-minutes {args.pairs_minutes})")
    held = [f for i, f in enumerate(files) if i % 10 == 9] or files[-1:]
    cfg = RefinerConfig(channels=args.channels, blocks=args.blocks, skip=skip, gate=args.gate,
                        noise_scales=noise_scales, analysed=args.analysed_skipped)
    # (one shard: it is both; the held-out table then says nothing about new crops)
    extra = [f for folder in args.pairs_from for f in shard_files(Path(folder))]
    check_made_from(extra, fingerprint)
    train_set = Pairs(([f for f in files if f not in held] or files) + extra, cfg)
    val = Pairs(held, cfg)
    print(f"training on {len(train_set)} crops ({len(extra)} shards from --pairs-from), "
          f"{len(val)} held out", file=sys.stderr)
    refiner = train(train_set, out / "train", cfg, args.minutes, args.batch, args.lr, args.save_minutes,
                    args.seed, init, args.loss, device)
    folder = out / "model"
    folder.mkdir(parents=True, exist_ok=True)
    for f in Path(args.model).iterdir():
        if f.is_file() and f.name != FILENAME and f.suffix != ".md":
            shutil.copy2(f, folder / f.name)
    save_refiner(refiner, folder)
    table = held_out_table(refiner, val, init)
    write_text(out / "val.md", f"# held-out pairs ({len(val)} crops), PSNR-Y\n\n{table}")
    print(table)
    print(f"model folder with the refiner: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
