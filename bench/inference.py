"""Seconds per image for assess, restore and analyze-then-restore on a model shape.

Builds the shape with random weights (timing does not depend on training; random
weights never emit the end token, so every answer runs to its token limit: the worst
case), or loads --model DIR with its own inference settings, then times each flow once
on the bundled 512x512 astronaut photo. The baseline, run in the same process, is one
conditional velocity evaluation at that size (the unit the flow sampler repeats); every
flow is printed in seconds and as a multiple of it. --tile-batch 1,8,25 times the
restore once per tiles-per-forward setting, each also as a ratio to the first, then the
colour fix alone on its output.

Usage: python bench/inference.py [--shape tiny | --model DIR] [--size 512] [--steps N]
                                 [--tile-batch 1,8] [--device cpu]
Run it under `flock /tmp/uare-cpu.lock` on shared machines (a 512x512 restore at the
default 50 steps takes minutes on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def build(shape: str, device: str, dtype):
    """A UARE around a randomly initialised model of `shape` with a small BPE tokenizer."""
    from uare.data.instructions import ANALYZE_INSTRUCTIONS, SIMPLE_TEMPLATES
    from uare.data.iqa import COMPARE_QUESTIONS, SCORE_QUESTIONS
    from uare.model import build_model, get_config
    from uare.pipeline import UARE
    from uare.tokenizer import train_tokenizer

    cfg = get_config(shape)
    texts = list(ANALYZE_INSTRUCTIONS + SIMPLE_TEMPLATES + SCORE_QUESTIONS + COMPARE_QUESTIONS)
    texts += ["Overall the quality is bad poor fair good excellent, score 3.25."]
    tok = train_tokenizer(texts * 4, min(cfg.llm.vocab_size, 1024))
    torch.manual_seed(0)
    model = build_model(cfg, device=device, dtype=dtype, tokenizer=tok)
    torch.nn.init.normal_(model.llm2vae.weight, std=0.02)  # zero at init; keep the math honest
    return UARE(model)


def velocity_baseline(u, image) -> float:
    """Seconds of one conditional velocity call on a full restore context of `image`
    (its top-left tile when it is larger than the model's maximum side)."""
    from uare.pipeline import _Job, _to_float

    from uare.model.patches import latents_to_tokens

    x = torch.from_numpy(_to_float(image)).permute(2, 0, 1)[:, :u.tiles.tile, :u.tiles.tile]
    job = _Job("enhance this image with noise.", False, 2, 0, u.device)
    with torch.inference_mode():
        contexts, cond = u._condition(x[None], job)
        anchor = latents_to_tokens(cond, u.cfg.latent_patch_size)
        gh, gw = x.shape[-2] // u.grid, x.shape[-1] // u.grid
        noise = torch.randn(anchor.shape, device=u.device, dtype=u.dtype)
        u.model.velocity(contexts["full"], noise, 0.5, grid=(gh, gw), anchor=anchor)  # warm-up
        _sync(u.device)
        t0 = time.perf_counter()
        u.model.velocity(contexts["full"], noise, 0.5, grid=(gh, gw), anchor=anchor)
        _sync(u.device)
    return time.perf_counter() - t0


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="tiny")
    ap.add_argument("--model", default=None, help="a model folder (its inference.json applies) instead of --shape")
    ap.add_argument("--tile-batch", default=None,
                    help="comma-separated tiles per forward to time the restore with (default: the config's)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=None, help="flow steps (default: the pipeline default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 is fastest while other jobs share the cores)")
    ap.add_argument("--skip", default="", help="comma-separated flows to leave out: assess,restore,analyze")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.BICUBIC)
    dtype = torch.bfloat16 if args.bf16 else None
    if args.model:
        from uare import UARE

        u = UARE.from_pretrained(args.model, device=args.device, dtype=dtype)
    else:
        u = build(args.shape, args.device, dtype)
    steps = args.steps or u.config.steps
    skip = set(filter(None, args.skip.split(",")))
    print(f"{args.model or 'shape ' + args.shape}, {sum(p.numel() for p in u.model.parameters()) / 1e6:.1f} M parameters, "
          f"{args.size}x{args.size}, {steps} steps, guidance {u.config.guidance}, "
          f"{torch.get_num_threads()} threads, device {args.device}", flush=True)
    base = velocity_baseline(u, img)
    from uare.tiling import num_tiles

    print(f"baseline: one conditional velocity call on a {min(args.size, u.tiles.tile)} px canvas {base:.2f} s; "
          f"a {args.size} px restore runs {num_tiles(args.size, args.size, u.tiles)} tile(s) of "
          f"{u.tiles.tile} px", flush=True)

    def report(name, seconds, note):
        print(f"{name:16s} {seconds:8.1f} s/image   {seconds / base:7.1f} x baseline   ({note})", flush=True)

    if "assess" not in skip:
        a, s = timed(lambda: u.assess(img))
        report("assess", s, f"score {a.score:.3f}, answer of {len(a.text)} characters, "
                            f"at most {u.config.answer.max_new_tokens} tokens")
    if "restore" not in skip:
        batches = [int(b) for b in args.tile_batch.split(",")] if args.tile_batch else [u.config.tile_batch]
        first = None
        for b in batches:
            u.config.tile_batch = b
            r, s = timed(lambda: u.restore(img, task="denoise", steps=steps))
            first = first or s
            report(f"restore (b={b})", s, f"output {r.image.size[0]}x{r.image.size[1]}, "
                                         f"{first / s:.2f}x the speed of b={batches[0]}")
        # the colour fix alone (part of the restore above where the model's settings use it)
        from uare.color_fix import color_fix
        from uare.degradations.ops import pil_to_tensor

        x, y = pil_to_tensor(img), pil_to_tensor(r.image)
        _, s = timed(lambda: color_fix(y, x, u.config.color_fix_sigma))
        report("colour fix", s, f"sigma {u.config.color_fix_sigma:g} px, "
                                f"{'on' if u.config.color_fix else 'off'} in this model's settings")
    if "analyze" not in skip:
        r, s = timed(lambda: u.restore(img, task="denoise", analyze=True, steps=steps))
        report("analyze+restore", s, f"analysis of {len(r.text)} characters, "
                                     f"at most {u.config.analysis.max_new_tokens} tokens")
    if torch.device(args.device).type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
