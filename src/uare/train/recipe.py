"""Training recipes: YAML files loaded into one typed config tree.

Rules: unknown keys are errors that name the key and the choices; a recipe may name a
`base:` recipe (path relative to itself) and state only what differs; `--set a.b=v`
overrides are parsed as YAML scalars and checked exactly like file keys.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ..data.dataset import DataConfig


class RecipeError(ValueError):
    """A recipe that does not fit the config tree; the message names file and key."""


@dataclass
class ModelSection:
    preset: str = "tiny"          # a uare.model preset name, or a model folder
    init: str = ""                # folder to start from (a previous stage's output); "" = preset


@dataclass
class OptimSection:
    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-15
    weight_decay: float = 0.0
    warmup_steps: int = 250       # linear warm-up, then constant
    grad_clip: float = 1.0


@dataclass
class LossSection:
    ce_weight: float = 0.25
    mse_weight: float = 1.0
    timestep_shift: float = 4.0


@dataclass
class TrainSection:
    stage: int = 1
    steps: int = 10000
    trainable: str = "restoration"   # "restoration" (stage 1) | "all" (stage 2) | "understanding"
    # Bagel's freeze_vit: keep the ViT (not the connector) fixed whatever `trainable` says,
    # e.g. after a ViT pre-training step the language loss should read, not reshape
    freeze_vit: bool = False
    ema_decay: float = 0.995
    seed: int = 0
    out_dir: str = "runs/uare"


@dataclass
class CheckpointSection:
    every: int = 500
    keep_latest: int = 3


@dataclass
class LogSection:
    every: int = 1
    tensorboard: bool = True      # when the tensorboard package is installed


@dataclass
class ParallelSection:
    fsdp: str = "auto"                   # auto: shard when launched with >1 process
    mixed_precision: str = "auto"        # auto: bf16 on CUDA, fp32 on CPU; or bf16 | fp32
    activation_checkpointing: str = "auto"   # auto: on for CUDA; or on | off


@dataclass
class Recipe:
    name: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    log: LogSection = field(default_factory=LogSection)
    parallel: ParallelSection = field(default_factory=ParallelSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __post_init__(self):
        if self.train.trainable not in TRAINABLE:
            raise RecipeError(f"train.trainable must be one of {', '.join(TRAINABLE)}, got {self.train.trainable!r}")
        try:
            self.data.check()
        except ValueError as e:
            raise RecipeError(f"data: {e}") from e
        if not 0.0 <= self.train.ema_decay < 1.0:
            raise RecipeError(f"train.ema_decay must be in [0, 1), got {self.train.ema_decay}")


TRAINABLE = ("restoration", "all", "understanding")

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, tp, where: str):
    """Check a YAML value against a dataclass field type (int, float, str, bool, tuples,
    dicts); ints are accepted for floats, as YAML writes 1 for 1.0."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)   # YAML 1.1 reads 3e-4 (no dot) as a string
    if tp is str and isinstance(value, bool):  # YAML 1.1 reads on/off as booleans
        return "on" if value else "off"
    if tp in (int, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise RecipeError(f"{where}: expected {tp.__name__}, got {value!r}")
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if args[-1] is not Ellipsis and len(args) != len(value):
            raise RecipeError(f"{where}: expected {len(args)} values, got {value!r}")
        inner = args[:-1] * len(value) if args[-1] is Ellipsis else args
        return tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, inner)))
    if origin is dict and isinstance(value, dict):
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Union and value is None and type(None) in typing.get_args(tp):
        return None
    raise RecipeError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _build(cls, values: Any, where: str):
    if not isinstance(values, dict):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise RecipeError(f"{where or 'recipe'}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except RecipeError as e:
        raise RecipeError(f"{where}: {e}") from e


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read(path: Path, seen: tuple = ()) -> dict:
    if path in seen:
        raise RecipeError(f"{path}: base recipes form a cycle")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: cannot read recipe ({e})") from e
    if raw is None:   # a truncated or unsaved file would otherwise train on every default
        raise RecipeError(f"{path}: the recipe is empty")
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping at the top level")
    base = raw.pop("base", None)
    if base:
        raw = _merge(_read((path.parent / base).resolve(), seen + (path,)), raw)
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected key=value, e.g. train.steps=100")
    key, _, value = text.partition("=")
    # `key=` means the empty string (YAML would read it as null)
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else ""


def find_recipe(name: str, search: Optional[Path] = None) -> Path:
    """A path as given, or `<scale>/<stage>` under ./recipes (with or without .yaml)."""
    p = Path(name)
    candidates = [p, p.with_suffix(".yaml")]
    root = search or Path.cwd() / "recipes"
    candidates += [root / p, (root / p).with_suffix(".yaml")]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise RecipeError(f"{name}: no such recipe (looked in {root})")


def load_recipe(name: str, overrides: Optional[list[str]] = None) -> Recipe:
    """Load a recipe file (following `base:`), apply `key=value` overrides, check it all."""
    path = find_recipe(name)
    raw = _read(path)
    for text in overrides or []:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise RecipeError(f"--set {text!r}: {k} is not a section")
        node[keys[-1]] = value
    raw.setdefault("name", path.stem)
    try:
        recipe = _build(Recipe, raw, "")
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from e
    return recipe
