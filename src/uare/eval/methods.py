"""Methods under evaluation: one small plug-in interface and a registry.

A method restores images (`restore(image, task, scale) -> PIL image`), scores them for
IQA (`score(image) -> float`), or both. Methods are named on the command line by a spec
string, `name` or `name:key=value:key=value` (e.g. `uare:model=runs/tiny:steps=8:analyze`),
so one run can compare several settings of the same method side by side.

A method whose optional dependency is missing raises `MethodUnavailable` when it is
built; the runners skip it with that message instead of failing the whole run.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Optional

from PIL import Image

RESTORE_TASKS = ("sr", "denoise", "deblur", "dejpeg", "dehaze", "derain", "lowlight", "mixed", "auto")


class MethodUnavailable(RuntimeError):
    """A method that cannot run here (an optional package or model is missing)."""


class MethodError(ValueError):
    """A bad method spec or option (exit code 2 on the command line)."""


@dataclass(frozen=True)
class MethodSpec:
    """A parsed `name:key=value:flag` spec. `label` names the method in tables."""

    name: str
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        if not self.options:
            return self.name
        opts = ",".join(f"{k}={v}" if v is not True else k for k, v in self.options.items())
        return f"{self.name}({opts})"

    @property
    def fingerprint(self) -> str:
        """Stable id of the method and its options: cache entries are keyed on it."""
        blob = json.dumps([self.name, self.options], sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def parse_spec(text: str) -> MethodSpec:
    """`'uare:model=DIR:steps=8:analyze'` -> MethodSpec('uare', {...}). Values stay strings,
    except bare flags (True); each method converts its own options."""
    parts = [p.strip() for p in text.strip().split(":")]
    if not parts[0]:
        raise MethodError(f"empty method name in {text!r}")
    options: dict = {}
    for part in parts[1:]:
        if not part:
            continue
        key, sep, value = part.partition("=")
        options[key.strip()] = value.strip() if sep else True
    return MethodSpec(parts[0].lower(), options)


def split_methods(text: str) -> list[MethodSpec]:
    """The `--methods` list: comma-separated specs."""
    specs = [parse_spec(t) for t in text.split(",") if t.strip()]
    if not specs:
        raise MethodError("no methods given")
    return specs


class Method:
    """Base class. Subclasses set `tasks` (what they can do) and override
    `restore` and/or `score`. Instances are built once per run and reused per image."""

    name: str = "method"
    tasks: frozenset = frozenset()      # subset of RESTORE_TASKS plus "iqa"
    lower_better: bool = False          # for IQA scores (NIQE-like methods set True)
    takes_types: bool = False           # restore(..., types=) is told each input's degradations
    description: str = ""

    def __init__(self, spec: Optional[MethodSpec] = None):
        self.spec = spec or MethodSpec(self.name)
        self.last_text: Optional[str] = None   # text a method produced with its last output

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def fingerprint(self) -> str:
        """Cache key of this method: its spec, and whatever else decides its outputs
        (`state()`), so that retrained weights or edited settings behind the same spec are
        run again, never read back from an older run's cache."""
        state = self.state()
        if not state:
            return self.spec.fingerprint
        return hashlib.sha1(f"{self.spec.fingerprint}:{state}".encode()).hexdigest()[:12]

    def state(self) -> str:
        """What, besides the spec, the outputs depend on (a digest); "" for nothing."""
        return ""

    def supports(self, task: str) -> bool:
        return task in self.tasks or ("auto" in self.tasks and task != "iqa")

    def restore(self, image: Image.Image, task: str, scale: int = 1) -> Image.Image:
        """image: RGB PIL (LQ) -> RGB PIL, `scale` times its size."""
        raise NotImplementedError(f"{self.label} does not restore images")

    def score(self, image: Image.Image) -> float:
        """image: RGB PIL -> quality score (orientation given by `lower_better`)."""
        raise NotImplementedError(f"{self.label} does not assess images")

    def option(self, key: str, default=None, cast: Callable = str):
        """An option from the spec, converted; a bad value names the method and option."""
        if key not in self.spec.options:
            return default
        value = self.spec.options[key]
        try:
            return cast(value)
        except (TypeError, ValueError):
            raise MethodError(f"{self.label}: option {key}={value!r} is not a valid {cast.__name__}") from None

    def check_options(self, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(self.spec.options) - set(allowed))
        if unknown:
            raise MethodError(f"{self.name}: unknown option(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(allowed) or 'none'}")


def as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


# ---- registry ----------------------------------------------------------------------

_REGISTRY: dict[str, Callable[[MethodSpec], Method]] = {}
_HELP: dict[str, str] = {}


def register_method(name: str, help_text: str = ""):
    """Class decorator (or call with a factory): `@register_method("bicubic")`."""
    def deco(factory):
        _REGISTRY[name] = factory
        doc_lines = (factory.__doc__ or "").strip().splitlines()
        _HELP[name] = help_text or (doc_lines[0] if doc_lines else name)
        return factory
    return deco


def _load_builtins() -> None:
    # Importing registers them; kept lazy so `methods` alone imports no optional package.
    from . import baselines, peers, ours  # noqa: F401


def list_methods() -> dict[str, str]:
    """name -> one-line description of every registered method."""
    _load_builtins()
    return dict(sorted(_HELP.items()))


def create_method(spec) -> Method:
    """A spec string or MethodSpec -> a ready Method.

    Raises MethodError for an unknown name or bad option, MethodUnavailable when the
    method's optional package or model is not installed."""
    _load_builtins()
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.name not in _REGISTRY:
        raise MethodError(f"unknown method {spec.name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[spec.name](spec)
