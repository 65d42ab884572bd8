"""Runners for `uare eval sr` and `uare eval restore`: paired restoration benchmarks.

Each runner builds a list of `Item`s (one low-quality input with its ground truth), runs
every method on every item, scores the output, caches the per-image result, and writes
the tables, plots and gallery into the run folder:

    OUT/cache.jsonl            per-image results (resume)
    OUT/images/<method>/...    outputs;  OUT/inputs/... degraded inputs (restore)
    OUT/<task>.md/.csv         summary table;  OUT/<task>_per_image.csv
    OUT/plots/*.png            OUT/gallery.html
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..imageio import ImageError, list_images, load_image, read_jsonl, save_image, write_json, write_text
from .cache import ResultCache, digest
from .methods import Method, MethodError, MethodUnavailable, create_method, parse_spec
from .report import Column, per_image_csv, summarise, write_report
from .scoring import MetricSet, build_metrics

# Degradation type -> restoration task (docs/design.md, "Degradation record").
TYPE_TASK = {"blur": "deblur", "noise": "denoise", "jpeg": "dejpeg", "haze": "dehaze",
             "rain": "derain", "raindrop": "derain", "lowlight": "lowlight", "downsample": "sr"}
RUN_ERRORS = (ValueError, OSError, RuntimeError)   # one bad image or method call: go on


def _info(msg: str) -> None:
    from ..cli import info
    info(msg)


def _progress(items, desc: str, total: int):
    from ..cli import progress
    return progress(items, desc, total=total)


@dataclass
class EvalConfig:
    """Settings shared by every eval task."""

    out: Path
    methods: Sequence[str] = ("bicubic",)
    metrics: Optional[Sequence[str]] = None     # None: the task's defaults
    limit: Optional[int] = None                 # first N items (sorted by name)
    y_channel: bool = True                      # PSNR/SSIM on BT.601 Y, as SR papers
    crop_border: Optional[int] = None           # None: the SR scale, 0 for restoration
    seed: int = 0
    name: Optional[str] = None                  # dataset name in tables (default: folder)
    plots: bool = True
    gallery: bool = True
    gallery_rows: int = 40
    metric_factory: Optional[Callable] = None   # tests inject fakes; default uare.metrics

    def __post_init__(self):
        self.out = Path(self.out)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")


@dataclass(frozen=True)
class Item:
    """One benchmark input: LQ file, ground truth (or None), task, scale, and the
    degradation types it was made with (for methods that can be told them)."""

    key: str
    lq: Path
    ref: Optional[Path]
    task: str
    scale: int = 1
    types: tuple = ()


@dataclass
class EvalResult:
    records: list = field(default_factory=list)    # per (method, image) dicts
    table: list = field(default_factory=list)      # summary rows
    columns: list = field(default_factory=list)
    failures: list = field(default_factory=list)   # "method on image: reason"
    skipped: list = field(default_factory=list)    # methods / metrics left out, with why
    files: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"


def dataset_name(folder: Path) -> str:
    """`.../drealsr_x4/HR` -> `drealsr_x4`: pair folders are named for their role."""
    folder = Path(folder).resolve()
    if folder.name.lower() in ("hr", "lr", "gt", "hq", "lq", "gt_images", "images"):
        return folder.parent.name
    return folder.name


def build_methods(specs: Sequence[str], task: Optional[str]) -> tuple[list[Method], list[str]]:
    """Spec strings -> ready methods (that can do `task`, unless it is None); unavailable
    ones are skipped with a message (optional peers), bad specs raise MethodError."""
    methods, skipped, labels = [], [], set()
    for text in specs:
        spec = parse_spec(text) if isinstance(text, str) else text
        if spec.label in labels:
            raise MethodError(f"method {spec.label} is listed twice")
        labels.add(spec.label)
        try:
            method = create_method(spec)
        except MethodUnavailable as e:
            reason = str(e).removeprefix(f"{spec.name}: ")
            skipped.append(f"{spec.label}: {reason}")
            _info(f"skipping {spec.label}: {reason}")
            continue
        if task is not None and not method.supports(task):
            skipped.append(f"{spec.label}: does not do {task}")
            _info(f"skipping {spec.label}: it does not do {task}")
            continue
        methods.append(method)
    return methods, skipped


def pair_sr(lr_dir: Path, hr_dir: Path, scale: int, limit: Optional[int]) -> tuple[list[Item], list[str]]:
    """LR/HR files paired by file stem; unpaired files are reported, not fatal."""
    lrs = {p.stem: p for p in list_images(lr_dir)}
    hrs = {p.stem: p for p in list_images(hr_dir)}
    if not lrs:
        raise ImageError(f"{lr_dir}: no images")
    missing = [f"{lrs[k]}: no ground truth named {k}.* in {hr_dir}" for k in sorted(set(lrs) - set(hrs))]
    keys = sorted(set(lrs) & set(hrs))[:limit]
    return [Item(k, lrs[k], hrs[k], "sr", scale) for k in keys], missing


def _run_one(method: Method, item: Item, lq, ref, mset: MetricSet, out: Path, dg: str) -> dict:
    t0 = time.perf_counter()
    told = {"types": item.types} if method.takes_types else {}
    result = method.restore(lq, item.task, item.scale, **told)
    seconds = time.perf_counter() - t0
    want = (lq.width * item.scale, lq.height * item.scale)
    if result.size != want:
        raise ValueError(f"output is {result.size[0]}x{result.size[1]}, expected {want[0]}x{want[1]}")
    if ref is not None and ref.size != result.size and item.scale > 1 and \
            all(0 <= r - o < item.scale for r, o in zip(ref.size, result.size)):
        ref = ref.crop((0, 0) + result.size)   # "modcrop": HR not a multiple of the scale
    rel = Path("images") / slug(method.label) / f"{slug(item.key)}.png"
    save_image(result, out / rel, protect=[p for p in (item.lq, item.ref) if p])
    text = method.last_text
    if text:   # the analysis of analyse-then-restore, saved beside the image
        write_text((out / rel).with_suffix(".txt"), text + "\n")
    return {"method": method.label, "fp": method.fingerprint, "key": item.key, "input": dg,
            "metrics": mset(result, ref), "output": rel.as_posix(), "seconds": seconds, "text": text}


def run_items(items: Sequence[Item], methods: Sequence[Method], mset: MetricSet, out: Path,
              group: str) -> tuple[list[dict], list[str]]:
    """Every method on every item, cached per image. Returns (records, failures)."""
    cache = ResultCache(out / "cache.jsonl")
    records, failures = [], []
    pairs = [(item, m) for item in items for m in methods]
    loaded: dict = {}
    digests: dict = {}
    for item, method in _progress(pairs, f"eval {group}", total=len(pairs)):
        if item.key not in digests:   # hash each input pair once, not once per method
            digests[item.key] = digest([item.lq, item.ref], {**mset.settings, "task": item.task,
                                                             "scale": item.scale})
        dg = digests[item.key]
        rec = cache.get(method.fingerprint, item.key, dg)
        if rec is None:
            try:
                if loaded.get("key") != item.key:   # decode each input once for all methods
                    loaded = {"key": item.key, "lq": load_image(item.lq),
                              "ref": load_image(item.ref) if item.ref else None}
                rec = cache.put(_run_one(method, item, loaded["lq"], loaded["ref"], mset, out, dg))
            except RUN_ERRORS as e:
                loaded = {} if isinstance(e, ImageError) else loaded
                failures.append(f"{method.label} on {item.key}: {e}")
                _info(f"failed: {method.label} on {item.key}: {e}")
                continue
        records.append({**rec["metrics"], "group": group, "key": item.key, "method": method.label,
                        "seconds": rec["seconds"], "output": rec["output"], "lq": str(item.lq),
                        "ref": str(item.ref) if item.ref else "", "text": rec.get("text")})
    return records, failures


def finish(result: EvalResult, cfg: EvalConfig, task: str, title: str, mset: MetricSet,
           methods: Sequence[Method], notes: Sequence[str] = ()) -> EvalResult:
    """Tables, per-image CSV, plots and gallery for a paired-restoration run."""
    keys = mset.names
    labels = [m.label for m in methods]
    result.columns = mset.columns() + [Column("seconds", "s/img", None)]
    result.table = summarise(result.records, keys + ["seconds"], labels)
    notes = list(notes) + [f"skipped {s}" for s in result.skipped]
    result.files.update(write_report(cfg.out, task, title, result.table, result.columns, notes))
    per_image = cfg.out / f"{task}_per_image.csv"
    write_text(per_image, per_image_csv(result.records, keys + ["seconds"], extra=("output",)))
    result.files["per_image"] = per_image
    if cfg.plots:
        from .plots import restoration_plots, guarded
        result.files.update(guarded(restoration_plots, cfg.out / "plots", result.table, mset.columns(), _info))
    if cfg.gallery:
        from .gallery import write_gallery
        result.files["gallery"] = write_gallery(cfg.out, title, result.records, labels, mset.columns(),
                                                max_rows=cfg.gallery_rows)
    return result


def evaluate_sr(lr_dir, hr_dir, cfg: EvalConfig, scale: int = 4) -> EvalResult:
    """`uare eval sr`: x`scale` super-resolution of LR against HR, per method."""
    lr_dir, hr_dir = Path(lr_dir), Path(hr_dir)
    items, unpaired = pair_sr(lr_dir, hr_dir, scale, cfg.limit)
    crop = scale if cfg.crop_border is None else cfg.crop_border
    mset = build_metrics(cfg.metrics, "sr", crop, cfg.y_channel, cfg.metric_factory)
    methods, skipped = build_methods(cfg.methods, "sr")
    result = EvalResult(skipped=skipped + mset.skipped, failures=list(unpaired))
    group = cfg.name or dataset_name(lr_dir)
    result.records, failures = run_items(items, methods, mset, cfg.out, group)
    result.failures += failures
    notes = [f"{len(items)} images, x{scale}; PSNR/SSIM on {'Y (BT.601)' if cfg.y_channel else 'RGB'},"
             f" {crop}-pixel border cropped"]
    return finish(result, cfg, "sr", f"x{scale} super-resolution on {group}", mset, methods, notes)


def record_types(record: dict) -> tuple[str, ...]:
    """The restorable degradation types of a record, once each, in the order applied."""
    return tuple(dict.fromkeys(s["type"] for s in record.get("steps", []) if s.get("type") in TYPE_TASK))


def task_for_record(record: dict) -> tuple[str, int]:
    """Degradation record -> (restoration task, scale) per the design notes."""
    scale = 1
    if record.get("input_size") and record.get("output_size"):
        scale = max(1, round(record["input_size"][0] / max(1, record["output_size"][0])))
    if str(record.get("preset", "")).startswith("realesrgan"):
        return "sr", scale
    types = record_types(record)
    if len(types) >= 2:
        return "mixed", scale
    return (TYPE_TASK[types[0]] if types else "auto"), scale


def _default_degrade():
    try:
        from ..degradations import degrade
    except ImportError as e:
        raise MethodError(f"eval restore needs uare.degradations ({e})") from None
    return degrade


def degrade_inputs(hq: Sequence[Path], preset: str, cfg: EvalConfig,
                   degrade: Optional[Callable] = None, prefix: str = "") -> tuple[list[Item], list[str]]:
    """Make (or reuse) the degraded input of each HQ image under OUT/inputs/<preset>/.
    Image i gets seed cfg.seed + i, so a longer --limit keeps the first inputs.
    Item keys are `prefix + stem` (a prefix keeps several presets apart)."""
    folder = cfg.out / "inputs" / slug(preset)
    manifest = {r["key"]: r for r in read_jsonl(folder / "manifest.jsonl")}
    items, failures = [], []
    for i, path in enumerate(hq):
        key, seed = path.stem, cfg.seed + i
        lq_path = folder / f"{key}.png"
        try:
            hq_digest = digest([path], {"preset": preset, "seed": seed})
            rec = manifest.get(key)
            if rec is None or rec.get("digest") != hq_digest or not lq_path.exists():
                degrade = degrade or _default_degrade()
                lq, record = degrade(load_image(path), preset, seed=seed)
                save_image(lq, lq_path, protect=[path])
                rec = {"key": key, "hq": str(path), "digest": hq_digest, "record": record}
                from ..imageio import append_jsonl
                append_jsonl(folder / "manifest.jsonl", rec)
            task, scale = task_for_record(rec["record"])
            items.append(Item(prefix + key, lq_path, path, task, scale, record_types(rec["record"])))
        except RUN_ERRORS as e:
            failures.append(f"{path}: cannot degrade ({e})")
            _info(f"failed: {path}: cannot degrade ({e})")
    return items, failures


def evaluate_restore(hq_dir, presets, cfg: EvalConfig, degrade: Optional[Callable] = None) -> EvalResult:
    """`uare eval restore`: degrade each HQ image with each preset (one string or a list;
    one table group per preset, as the columns of Table 2), restore, score against HQ."""
    hq_dir = Path(hq_dir)
    presets = [presets] if isinstance(presets, str) else list(presets)
    hq = list_images(hq_dir)[:cfg.limit]
    if not hq:
        raise ImageError(f"{hq_dir}: no images")
    methods, skipped = build_methods(cfg.methods, None)
    result = EvalResult(skipped=skipped)
    mset, notes = None, []
    for preset in presets:
        prefix = f"{preset}/" if len(presets) > 1 else ""
        items, failures = degrade_inputs(hq, preset, cfg, degrade, prefix)
        task = items[0].task if items else "auto"
        scale = items[0].scale if items else 1
        # The SR convention (crop = scale) only for presets that downsample.
        crop = cfg.crop_border if cfg.crop_border is not None else (scale if scale > 1 else 0)
        mset = build_metrics(cfg.metrics, "restore", crop, cfg.y_channel, cfg.metric_factory)
        able = [m for m in methods if m.supports(task)]
        result.skipped += [f"{m.label}: does not do {task} ({preset})" for m in methods if m not in able]
        result.skipped += [s for s in mset.skipped if s not in result.skipped]
        group = f"{cfg.name or dataset_name(hq_dir)} {preset}"
        records, fails = run_items(items, able, mset, cfg.out, group)
        result.records += records
        result.failures += failures + fails
        notes.append(f"{preset}: {len(items)} images (seed {cfg.seed} + index), task {task}, crop {crop}")
    write_json(cfg.out / "restore_settings.json", {"presets": presets, "seed": cfg.seed})
    title = f"{', '.join(presets)} restoration on {dataset_name(hq_dir)}"
    return finish(result, cfg, "restore", title, mset, methods, notes)
