"""`uare restore IMAGE_OR_DIR... -o OUT [--task T] [--types A,B] [--prompt TEXT] [--analyze]
[--steps N] [--seed S] [--color-fix auto|on|off] [--refine auto|on|off] [--branch auto|on|off] [--ensemble N] [--strength S] [--temperature T] [--mix M]`: restored
images, and with --analyze the model's analysis beside each one."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ..cli import UsageError, emit_json, info, run_batch
from ..data.instructions import TASK_OF_TYPE
from ..model.branch import FILENAME as BRANCH_FILE, check_ensemble
from ..model.refiner import FILENAME as REFINER_FILE
from ..pipeline import TASKS
from ..sampling import check_mix, check_strength, check_temperature
from .assess import add_model_arguments, input_files, open_model, reporting_failures


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="images or folders of them")
    parser.add_argument("-o", "--out", required=True, metavar="OUT",
                        help="output file for one input image, output folder otherwise")
    parser.add_argument("--task", default="auto", choices=TASKS,
                        help="what to do (default auto: the model picks from its own assessment)")
    parser.add_argument("--prompt", default=None, help="your own instruction (overrides --task's wording)")
    parser.add_argument("--analyze", action="store_true",
                        help="write a 4-part quality analysis first and restore conditioned on it")
    parser.add_argument("--steps", type=int, default=None, help="flow sampling steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed; same seed, same image")
    parser.add_argument("--types", default=None, metavar="TYPE[,TYPE...]",
                        help="the degradations the images have (" + ", ".join(TASK_OF_TYPE) + "): the "
                             "instruction names them, as in training ('enhance this image with raindrops.')")
    parser.add_argument("--color-fix", choices=("auto", "on", "off"), default="auto",
                        help="give the output the input's tone and colour back (auto: the model's "
                             "setting, by task; the tiny model does it for sr, denoise, deblur "
                             "and dejpeg)")
    parser.add_argument("--refine", choices=("auto", "on", "off"), default="auto",
                        help="run the model's refiner (refiner.safetensors: the input's fine detail "
                             "the latent cannot hold) on the decoded output (auto: the model's "
                             "setting, by task)")
    parser.add_argument("--branch", choices=("auto", "on", "off"), default="auto",
                        help="where the image has one degradation alone and the model has a pixel "
                             "branch for it (branches.safetensors; the tiny model's: JPEG, raindrops, "
                             "noise), restore with that branch instead of sampling (auto: the model's "
                             "setting, by task)")
    parser.add_argument("--ensemble", default=None, metavar="N",
                        help="average the output of a pixel branch, or of the refiner, over N "
                             "flips and rotations of the image (1, 2, 4 or 8): N times that "
                             "network's time, less of its error (default: the model's)")
    parser.add_argument("--strength", default=None, metavar="S",
                        help="img2img strength in (0, 1]: start sampling from the input noised to "
                             "time S instead of from pure noise (1); lower keeps more of the input "
                             "(default: the model's)")
    parser.add_argument("--temperature", default=None, metavar="T",
                        help="scale of the starting noise in [0, 2]: 1 samples as trained, lower "
                             "invents less detail (closer to the original on average), 0 starts "
                             "from the noise's mean (default: the model's, by task)")
    parser.add_argument("--mix", default=None, metavar="M",
                        help="share of the model's change the output keeps, in [0, 1]: 1 the model's "
                             "output, lower moves it back toward the input (closer to it, less "
                             "invented or overdone change); auto: for denoise, the share the "
                             "input's noise level calls for; default: the model's, by task")
    parser.add_argument("--skip-existing", action="store_true",
                        help="leave inputs whose output already exists (resume a killed batch)")
    add_model_arguments(parser)


def restore_options(types: Optional[str], color_fix: str = "auto", strength: Optional[str] = None,
                    temperature: Optional[str] = None, mix: Optional[str] = None,
                    refine: str = "auto", branch: str = "auto", ensemble: Optional[str] = None) -> dict:
    """restore() keywords from the text of --types / ?types= ("raindrop,noise"),
    --color-fix / ?color_fix=, --refine / ?refine= and --branch / ?branch= (auto leaves the
    model's setting; nothing is passed),
    --strength / ?strength=, --temperature / ?temperature=, --mix / ?mix= and --ensemble /
    ?ensemble= (empty leaves the model's)."""
    named = [t.strip() for t in (types or "").split(",") if t.strip()] or None
    bad = [t for t in named or () if t not in TASK_OF_TYPE]
    if bad:
        raise ValueError(f"types: unknown {', '.join(bad)}; choose from {', '.join(TASK_OF_TYPE)}")
    options = {"types": named}
    for name, text in (("color_fix", color_fix), ("refine", refine), ("branch", branch)):
        value = str(text).lower()
        if value not in ("auto", "on", "off"):
            raise ValueError(f"{name} must be auto, on or off, got {value!r}")
        if value != "auto":
            options[name] = value == "on"
    for name, text, check in (("strength", strength, check_strength),
                              ("temperature", temperature, check_temperature), ("mix", mix, check_mix),
                              ("ensemble", ensemble, check_ensemble)):
        if text not in (None, ""):
            options[name] = check(text)
    return options


def output_paths(inputs: list[str], files: list[Path], out: str) -> dict[Path, Path]:
    """Input file -> output image path. One input file: OUT is the file (or a folder that
    exists); otherwise OUT is a folder of PNGs named after the inputs."""
    out_p = Path(out)
    single = len(files) == 1 and len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if single and not out_p.is_dir():
        return {files[0]: out_p}
    if out_p.exists() and not out_p.is_dir():
        raise UsageError(f"{out_p}: OUT must be a folder when restoring several images")
    mapping, used = {}, set()
    for f in files:
        name = f"{f.stem}.png"
        if name in used:  # a.jpg and a.png in one batch must not overwrite each other
            name = f"{f.stem}_{f.suffix.lstrip('.').lower()}.png"
        used.add(name)
        mapping[f] = out_p / name
    return mapping


@contextmanager
def step_bar(name: str):
    """A progress bar under the batch bar (a single image can take minutes), in passes of
    a model over a tile: a sampler step, or one self-ensemble pass of a branch."""
    bar = None

    def tick(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=name, unit="pass", file=sys.stderr, leave=False,
                       dynamic_ncols=True, position=1)
        bar.update(done - bar.n)

    try:
        yield tick
    finally:
        if bar is not None:
            bar.close()


def run(args) -> int:
    if args.steps is not None and args.steps < 2:
        raise UsageError(f"--steps must be at least 2, got {args.steps}")
    try:
        options = restore_options(args.types, args.color_fix, args.strength, args.temperature, args.mix,
                                  args.refine, args.branch, args.ensemble)
    except ValueError as e:
        raise UsageError(f"--{e}") from None
    files = input_files(args.inputs)
    targets = output_paths(args.inputs, files, args.out)
    if args.skip_existing:
        done = [f for f in files if targets[f].exists()]
        files = [f for f in files if f not in done]
        if done:
            info(f"skipping {len(done)} inputs whose output exists")
        if not files:
            return 0
    model = open_model(args)
    if options.get("refine") and getattr(model, "refiner", None) is None:
        raise UsageError(f"--refine on: the model has no refiner ({REFINER_FILE} in its folder)")
    if options.get("branch") and not getattr(model, "branches", None):
        raise UsageError(f"--branch on: the model has no pixel branches ({BRANCH_FILE} in its folder)")

    def one(path: Path) -> None:
        from ..imageio import save_image, write_text

        with step_bar(path.name) as tick:
            r = model.restore(path, task=args.task, prompt=args.prompt, analyze=args.analyze,
                              steps=args.steps, seed=args.seed, progress=tick, **options)
        out = save_image(r.image, targets[path], protect=files)
        text_path = None
        if r.text is not None:
            text_path = write_text(out.with_suffix(".txt"), r.text + "\n")
        if args.json:
            emit_json({"image": str(path), "output": str(out), "size": list(r.image.size),
                       "task": r.task, "prompt": r.prompt, "mix": round(float(r.mix), 4),
                       "branch": getattr(r, "branch", None), "text": r.text,
                       "text_file": str(text_path) if text_path else None})
        else:
            info(f"{path} -> {out}")
            if r.text is not None:
                print(f"{path}:\n{r.text}\n", flush=True)

    return run_batch(files, reporting_failures(one, args.json), "restore")
