"""Teach a trained model's ViT to show JPEG blocking (and keep noise and blur) to the
language side that already reads quality, through that side, frozen; with --train und,
the understanding side (connector, und expert, its final norm) learns with the ViT.

    python scripts/tune_vit_iqa.py --model weights/uare-tiny -o runs/s28/vitq [--minutes 30]
    python scripts/tune_vit_iqa.py --model weights/uare-tiny -o runs/s29/undq --train und

Why: the shipped scores follow noise and blur but hardly JPEG (model card, "Where JPEG
severity is (not) in the scores"): a linear probe finds JPEG severity weakly in the ViT's
features and only at the block phase it was trained at. A new read-out cannot reach 0.9
(session 27 fitted the level words' rows of lm_head: at best 0.44). So the ViT itself
is trained, and only the ViT: the connector, the MoT and lm_head stay as shipped, and the
gradient of the very score `UARE.assess` reports (the expected level over the five level
words, Q-Align's read-out, at "Overall the quality is") reaches the ViT through them. The
ViT can then learn to put blocking where the frozen reader already looks for quality
loss, instead of the language side learning a new direction.

Each step:
- sweeps: a training-photo region degraded whole (so JPEG's 8 px grid is anchored at its
  corner, as in a JPEG file) by one of noise / blur / JPEG at a clean copy and 2 drawn
  severities, and a 128 px view cut at a random 0-7 px phase, the same for the three;
  a margin ranking loss asks each weaker copy to score higher (the per-image SRCC the
  monotonicity check measures, with content held fixed);
- anchor: the clean views' scores stay where the shipped ViT put them (absolute scores,
  and comparisons across photos, keep their calibration);
- distillation: restoration-like crops (random presets at phase 0, what the restoration
  tiles show the ViT) keep the shipped ViT's output, since the generation side reads
  these tokens too; its relative error is printed so the cost is visible.

--train und (session 29): through the frozen reader the ViT learned JPEG slowly and
unsteadily (session 28), so the reader learns too, everything of the und path after the
embeddings (lm_head and the token embeddings stay, so the level words keep their rows).
The generation side reads the und tokens' keys and values at every layer, so restoration
would move with them; the "keep" term holds it where it was: restoration contexts built as
`restore` builds them (the VAE block, the ViT block, a simple instruction, or an analyse
instruction with the analysis the data recipe writes for that crop, teacher-forced), the
velocity at an inference time step distilled to the start model's (relative MSE), and the
analysis tokens' next-token distributions too (KL), so what guided restoration generates
keeps its wording.

Held-out check (photos of --data never trained on, fixed seeds): assess's 5 views of a
256 px region, per-photo SRCC(-severity, score) over clean + 0.25 / 0.5 / 0.75 / 1.0 per
type, as `uare eval monotonic` computes it. The output folder is --model with the trained
weights replaced (every other tensor and file copied), written after each check.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_vit import sample  # noqa: E402  (restoration-like crops: random presets)

from uare import UARE  # noqa: E402
from uare.data.build import MULTI_PRESETS, SINGLE_TYPES  # noqa: E402
from uare.data.instructions import ANALYZE_INSTRUCTIONS, degradation_types  # noqa: E402
from uare.data.responses import analysis  # noqa: E402
from uare.degradations import degrade  # noqa: E402
from uare.degradations.ops import pil_to_tensor  # noqa: E402
from uare.eval.iqa_tasks import PER_IMAGE_SRCC  # noqa: E402
from uare.imageio import list_images, load_image  # noqa: E402
from uare.model import UAREModel  # noqa: E402
from uare.imageio import atomic_write  # noqa: E402
from uare.model.folder import _atomic_save  # noqa: E402
from uare.model.patches import latents_to_tokens  # noqa: E402
from uare.model.vit import patchify  # noqa: E402
from uare.pipeline import ASSESS_QUESTION, SCORE_PREFIX, _mean_reading, instruction_for  # noqa: E402
from uare.sampling import flow_timesteps, level_score  # noqa: E402

VIEW = 128
SEVERITIES = (0.25, 0.5, 0.75, 1.0)   # uare eval monotonic's levels in session 28's dev runs


def _grad(f):
    """A model inference call without its no_grad decorator."""
    return f.__wrapped__


class Reader:
    """The level reading assess takes at "Overall the quality is", for a batch of views,
    with gradients (the model's inference calls are no_grad; their bodies are not)."""

    def __init__(self, pipe, model=None):
        self.m, tok = (pipe.model if model is None else model), pipe.tok
        self.question = tok.encode(ASSESS_QUESTION)
        self.head = [tok.bos_id, *tok.encode(SCORE_PREFIX)]
        self.ids = torch.tensor([s[0] for s in pipe.level_seqs])

    def logp(self, views: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 5) log P(level word), bad..excellent."""
        m = self.m
        ctx = m.new_context()
        _grad(UAREModel.prefill_vit_image)(m, ctx, views * 2 - 1)
        _grad(UAREModel.prefill_text)(m, ctx, self.question)
        logits = _grad(UAREModel.extend_text)(m, ctx, self.head)
        return torch.log_softmax(logits.float(), -1)[:, self.ids]

    def score(self, views: torch.Tensor) -> torch.Tensor:
        """(B,) expected level, 1..5, as uare.sampling.level_score reads one view."""
        return torch.softmax(self.logp(views), -1) @ torch.arange(1.0, 6.0)


def trained_parameters(m, part: str) -> dict:
    """The parameters --train names, by state-dict name: the ViT, or with "und" also what
    carries image and text tokens to the reading (connector and the und expert)."""
    prefixes = ("vit.",) if part == "vit" else ("vit.", "connector.", "llm.norm.und.")
    return {n: p for n, p in m.named_parameters()
            if n.startswith(prefixes) or (part == "und" and ".experts.und." in n)}


class Keeper:
    """Restoration contexts as `restore` builds them, for the start model and the one in
    training: the velocity at an inference time and, for an analyse prompt, the analysis
    tokens' next-token log-probabilities."""

    def __init__(self, pipe, teacher):
        self.pipe, self.teacher = pipe, teacher
        self.p = pipe.cfg.latent_patch_size
        shift = pipe.cfg.timestep_shift if pipe.config.shift is None else pipe.config.shift
        self.times = flow_timesteps(pipe.config.steps, shift)[:-1].tolist()   # where velocity is asked

    def draw(self, photos, rng: random.Random, side: int = VIEW):
        """A crop after a random preset (a single type, a mix or Real-ESRGAN's, resized
        back for x4) with a simple or an analyse prompt, its latent, and a noisy state on
        the way to it."""
        a = photos[rng.randrange(len(photos))]
        y, x = rng.randrange(a.height - side + 1), rng.randrange(a.width - side + 1)
        region, seed = a.crop((x, y, x + side, y + side)), rng.getrandbits(31)
        u = rng.random()
        preset = (f"single:{rng.choice(SINGLE_TYPES)}" if u < 0.5 else rng.choice(MULTI_PRESETS) if u < 0.8
                  else "realesrgan")
        out, rec = degrade(region, preset, seed=seed)
        if out.size != region.size:
            out = out.resize(region.size, resample=3)
        tok = self.pipe.tok
        if rng.random() < 0.5:
            instr, answer = rng.choice(ANALYZE_INSTRUCTIONS), tok.encode(analysis(rec, seed).text)
        else:
            instr, answer = instruction_for("auto", degradation_types(rec)), None
        tile = pil_to_tensor(out)
        with torch.no_grad():
            latent = self.teacher.autoencoder.encode(tile * 2 - 1, sample=False)
        anchor = latents_to_tokens(latent, self.p)
        t = rng.choice(self.times)
        g = torch.Generator().manual_seed(seed)
        x_t = (1 - t) * anchor + t * torch.randn(anchor.shape, generator=g)
        return dict(tile=tile, latent=latent, instr=tok.encode(instr), answer=answer, x_t=x_t, t=t, anchor=anchor,
                    grid=(latent.shape[-2] // self.p, latent.shape[-1] // self.p))

    def read(self, m, d: dict):
        ctx = m.new_context()
        _grad(UAREModel.prefill_vae_image)(m, ctx, d["latent"])
        _grad(UAREModel.prefill_vit_image)(m, ctx, d["tile"] * 2 - 1)
        _grad(UAREModel.prefill_text)(m, ctx, d["instr"])
        logp = None
        if d["answer"]:
            c = m.cfg.llm
            hidden = m._append_text(ctx, [c.bos_id, *d["answer"], c.eos_id])[0, :-1]
            logp = torch.log_softmax(m.llm.lm_head(hidden).float(), -1)
        v = _grad(UAREModel.velocity)(m, ctx, d["x_t"], d["t"], d["grid"], anchor=d["anchor"])
        return logp, v.float()

    def loss(self, m, drawn: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity relative MSE, analysis KL per token), means over the drawn contexts."""
        vel, kl = [], []
        for d in drawn:
            with torch.no_grad():
                want_lp, want_v = self.read(self.teacher, d)
            lp, v = self.read(m, d)
            vel.append(((v - want_v) ** 2).mean() / (want_v ** 2).mean())
            if lp is not None:
                kl.append((want_lp.exp() * (want_lp - lp)).sum(-1).mean())
        return torch.stack(vel).mean(), (torch.stack(kl).mean() if kl else torch.zeros(()))


def sweep(photos, rng: random.Random, typ: str, n_levels: int, phase: int | None, share: float):
    """One region at clean + n_levels drawn severities of typ, one view phase for all:
    `phase` (assess's iqa_view_phase) for a `share` of sweeps, else drawn from 0-7."""
    a = photos[rng.randrange(len(photos))]
    side = VIEW + 8
    y, x = rng.randrange(a.height - side + 1), rng.randrange(a.width - side + 1)
    region = a.crop((x, y, x + side, y + side))
    levels = sorted(rng.uniform(0.1, 1.0) for _ in range(n_levels))
    seed = rng.getrandbits(31)
    copies = [region] + [degrade(region, f"single:{typ}:{s:.3f}", seed=seed)[0] for s in levels]
    fixed = phase is not None and rng.random() < share
    dy, dx = (phase, phase) if fixed else (rng.randrange(8), rng.randrange(8))
    return [pil_to_tensor(c.crop((dx, dy, dx + VIEW, dy + VIEW)))[0] for c in copies]


def heldout_srcc(pipe, reader: Reader, photos, types, seed: int = 0) -> dict:
    """Per-photo SRCC(-severity, pooled 5-view score) on 256 px centre regions (smaller
    photos: their short side)."""
    out = {t: [] for t in types}
    with torch.no_grad():
        for i, a in enumerate(photos):
            s = min(256, *a.size)
            x, y = (a.width - s) // 2, (a.height - s) // 2
            region = a.crop((x, y, x + s, y + s))
            for t in types:
                imgs = [region] + [degrade(region, f"single:{t}:{lv:g}", seed=seed + i)[0] for lv in SEVERITIES]
                scores = []
                for im in imgs:
                    pooled = _mean_reading(list(reader.logp(torch.stack(pipe._iqa_views(im)))))
                    scores.append(level_score(pooled, range(len(pooled))))
                # rounded as `uare eval monotonic` rounds: one swap in 5 levels is the 0.9 it is
                out[t].append(round(float(stats.spearmanr(-np.arange(len(imgs)), scores)[0]), 12))
    return {t: (float(np.mean(v)), sum(r >= PER_IMAGE_SRCC for r in v), len(v)) for t, v in out.items()}


def write_folder(src: Path, out: Path, trained: dict, settings: dict) -> None:
    """src's files into out, model.safetensors with the `trained` tensors (state-dict names)
    replaced (its metadata kept) and inference.json updated with `settings`."""
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy2(f, out / f.name)
    with safe_open(str(src / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    state = load_file(str(src / "model.safetensors"))
    unknown = set(trained) - set(state)
    if unknown:
        raise KeyError(f"{src / 'model.safetensors'} has no {sorted(unknown)[:3]}")
    state.update({k: v.detach().to(state[k].dtype).contiguous() for k, v in trained.items()})
    _atomic_save(state, out / "model.safetensors", meta)
    if settings:
        path = out / "inference.json"
        cfg = json.loads(path.read_text()) if path.exists() else {}
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps({**cfg, **settings}, indent=2) + "\n"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("weights/uare-tiny"))
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    ap.add_argument("--init", type=Path, help="start from this folder's weights (a run to go on with); the "
                    "teacher of the anchor and the distillations stays --model")
    ap.add_argument("--train", choices=["vit", "und"], default="vit",
                    help="vit: the ViT alone; und: also the connector and the und expert (the reader)")
    ap.add_argument("--lr-und", type=float, default=2e-5, help="learning rate of the und parameters")
    ap.add_argument("--keep", type=int, default=-1, help="restoration contexts a step held to the start "
                    "model's velocity and analysis (-1: 2 with --train und, else 0)")
    ap.add_argument("--w-keep", type=float, default=1.0)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps too (0: time only)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--sweeps", type=int, default=4, help="sweeps a step (each clean + --levels copies)")
    ap.add_argument("--levels", type=int, default=2)
    ap.add_argument("--types", default="jpeg,jpeg,noise,blur", help="drawn per sweep, repeats weight a type")
    ap.add_argument("--distill", type=int, default=8, help="restoration-like crops a step")
    ap.add_argument("--w-distill", type=float, default=1.0)
    ap.add_argument("--w-anchor", type=float, default=1.0)
    ap.add_argument("--phase", type=int, default=-1,
                    help="assess's view phase (inference.json iqa_view_phase, written to the output); -1: none, "
                         "every sweep's view at a drawn phase")
    ap.add_argument("--phase-share", type=float, default=0.75, help="sweeps cut at --phase (the rest: drawn)")
    ap.add_argument("--margin", type=float, default=0.1, help="score gap asked between two copies")
    ap.add_argument("--tau", type=float, default=0.05)
    ap.add_argument("--holdout", type=int, default=12, help="photos kept out of training for the check")
    ap.add_argument("--check-every", type=float, default=10.0, help="minutes between held-out checks")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=28)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    paths = [p for d in sorted(args.data.iterdir()) if d.is_dir() for p in list_images(d)]
    if not paths:
        raise SystemExit(f"{args.data}: no training photos")
    random.Random(0).shuffle(paths)
    photos = [p for p in map(load_image, paths) if min(p.size) >= VIEW + 8]
    held, train = photos[:args.holdout], photos[args.holdout:]
    if not train:
        raise SystemExit(f"{args.data}: {len(photos)} photos of at least {VIEW + 8} px, all held out")
    types = args.types.split(",")

    pipe = UARE.from_pretrained(args.model, device="cpu")
    m = pipe.model.float().eval()
    m.requires_grad_(False)
    teacher = copy.deepcopy(m)
    trained = trained_parameters(m, args.train)
    if args.init:
        state = load_file(str(args.init / "model.safetensors"))
        with torch.no_grad():
            for n, t in trained.items():
                t.copy_(state[n])
    for t in trained.values():
        t.requires_grad_(True)
    n_keep = (2 if args.train == "und" else 0) if args.keep < 0 else args.keep
    keeper = Keeper(pipe, teacher)
    phase = None if args.phase < 0 else args.phase
    pipe.config.iqa_view_phase = phase     # the check's views are assess's
    settings = {"iqa_view_phase": phase} if phase is not None else {}
    reader = Reader(pipe)
    vit = [t for n, t in trained.items() if n.startswith("vit.")]
    und = [t for n, t in trained.items() if not n.startswith("vit.")]
    opt = torch.optim.AdamW([{"params": vit, "lr": args.lr}] + ([{"params": und, "lr": args.lr_und}] if und else []),
                            weight_decay=0.0)
    log = (args.out / "log.jsonl")
    args.out.mkdir(parents=True, exist_ok=True)

    def note(rec: dict) -> None:
        with open(log, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def check(step: int, final: bool = False) -> None:
        """Held-out numbers into the log; after training steps, the folder written too."""
        r = heldout_srcc(pipe, reader, held, ("noise", "blur", "jpeg"))
        print(f"step {step} held-out SRCC " + "  ".join(f"{t} {v[0]:.3f} ({v[1]}/{v[2]} >= 0.9)" for t, v in r.items()),
              flush=True)
        note({"step": step, "heldout": r, **({"final": True} if final else {})})
        if step:
            write_folder(args.model, args.out, trained, settings)

    start_reader = Reader(pipe, teacher)

    def teacher_score(views):
        """The start model's scores (the anchor)."""
        with torch.no_grad():
            return start_reader.score(views)

    check(0)
    t0 = last_check = time.time()
    step = 0
    while time.time() - t0 < args.minutes * 60 and not (args.steps and step >= args.steps):
        sweeps = [sweep(train, rng, rng.choice(types), args.levels, phase, args.phase_share) for _ in range(args.sweeps)]
        views = torch.stack([v for s in sweeps for v in s])
        k = args.levels + 1
        scores = reader.score(views).view(args.sweeps, k)
        i, j = torch.triu_indices(k, k, 1)       # copy i is weaker than copy j
        gap = scores[:, i] - scores[:, j]
        rank = (args.tau * F.softplus((args.margin - gap) / args.tau)).mean()
        anchor = ((scores[:, 0] - teacher_score(views.view(args.sweeps, k, *views.shape[1:])[:, 0])) ** 2).mean()
        crops = torch.stack([pil_to_tensor(sample(train, rng, rng.getrandbits(31), VIEW)[0])[0]
                             for _ in range(args.distill)]) * 2 - 1
        patches, pos = zip(*(patchify(x, m.cfg.vit) for x in crops))
        n = patches[0].shape[0]
        flat, pos = torch.cat(patches), torch.cat(pos)
        with torch.no_grad():
            target = teacher.vit(flat, pos, [n] * len(crops))
        got = m.vit(flat, pos, [n] * len(crops))
        distill = ((got - target) ** 2).mean() / (target ** 2).mean()
        loss = rank + args.w_anchor * anchor + args.w_distill * distill
        if n_keep:
            vel, kl = keeper.loss(m, [keeper.draw(train, rng) for _ in range(n_keep)])
            loss = loss + args.w_keep * (vel + kl)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(trained.values()), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            rec = {"step": step, "min": round((time.time() - t0) / 60, 2), "rank": round(rank.item(), 4),
                   "ordered": round(float((gap > 0).float().mean()), 3), "anchor": round(anchor.item(), 4),
                   "distill_rel": round(distill.item(), 5),
                   **({"keep_vel_rel": round(vel.item(), 5), "keep_kl": round(kl.item(), 5)} if n_keep else {})}
            print(json.dumps(rec), flush=True)
            note(rec)
        if time.time() - last_check > args.check_every * 60:
            check(step)
            last_check = time.time()
    check(step, final=True)
    print(f"wrote {args.out} after {step} steps ({(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
