"""`uare degrade IMAGE_OR_DIR -o OUT --preset PRESET [--seed S] [--count K]`: low-quality
images and a JSONL manifest of their degradation records.

Outputs are PNG (lossless, so the file holds exactly the degraded pixels) named
`<stem>_<preset>_<k>.png`, so several presets and counts can share one folder. Image i
of the sorted inputs, copy k, uses seed S + i·K + k: one file with K = 1 gets exactly
`degrade(image, preset, seed=S)`. Each manifest line is the record plus `source` and
`output`; a rerun skips every output already listed, so a killed batch resumes.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..cli import UsageError, info, run_batch
from ..imageio import append_jsonl, expand_inputs, load_image, read_jsonl, save_image

MANIFEST = "manifest.jsonl"


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="clean images or folders of them")
    parser.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    parser.add_argument("--preset", required=True,
                        help="single:TYPE[:SEVERITY] (blur, noise, jpeg, haze, rain, raindrop, lowlight, "
                             "downsample), multi:A+B[+C] (e.g. multi:lowlight+blur+noise) or realesrgan")
    parser.add_argument("--seed", type=int, default=0, help="base seed (image i, copy k uses S + i*K + k)")
    parser.add_argument("--count", type=int, default=1, help="degraded copies per image (default 1)")


def preset_slug(preset: str) -> str:
    """A file-name-safe form of the preset: `multi:lowlight+noise` -> `multi-lowlight-noise`."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", preset.strip()).strip("-")


def output_names(files: list[Path], preset: str, count: int) -> dict[Path, list[str]]:
    """Input file -> its K output names; a.jpg and a.png in one folder stay apart."""
    stems = [f.stem for f in files]
    slug = preset_slug(preset)
    names = {}
    for f in files:
        stem = f.stem if stems.count(f.stem) == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}"
        names[f] = [f"{stem}_{slug}_{k}.png" for k in range(count)]
    return names


def run(args) -> int:
    from ..degradations import PresetError, degrade, parse_preset

    try:
        parse_preset(args.preset)
    except PresetError as e:
        raise UsageError(str(e)) from None
    if args.count < 1 or args.seed < 0:
        raise UsageError(f"--count must be >= 1 and --seed >= 0 (got {args.count}, {args.seed})")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: OUT must be a folder")
    files = expand_inputs(args.inputs)
    if not files:
        raise UsageError(f"no images found in {', '.join(args.inputs)}")
    names = output_names(files, args.preset, args.count)
    manifest = out / MANIFEST
    done = {r.get("output") for r in read_jsonl(manifest) if (out / str(r.get("output"))).exists()}
    index = {f: i for i, f in enumerate(files)}
    todo = [f for f in files if not set(names[f]) <= done]
    if len(todo) < len(files):
        info(f"resuming: {len(files) - len(todo)} of {len(files)} inputs already in {manifest}")

    def one(path: Path) -> None:
        img = load_image(path)
        for k, name in enumerate(names[path]):
            if name in done:
                continue
            seed = args.seed + index[path] * args.count + k
            lq, record = degrade(img, args.preset, seed=seed)
            save_image(lq, out / name, protect=files)
            append_jsonl(manifest, {**record, "source": str(path), "output": name})

    code = run_batch(todo, one, "degrade")
    expected = {n for f in files for n in names[f]}
    listed = {r.get("output") for r in read_jsonl(manifest)} & expected
    info(f"{len(listed)} of {len(expected)} outputs written, listed in {manifest}")
    return code
