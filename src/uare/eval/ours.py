"""Our model as a plug-in (`uare`), and the no-reference metrics as IQA methods.

`uare:model=DIR:steps=N:analyze:named:prompt=TEXT:seed=S:task=auto:color_fix=off:refine=off:branch=off:ensemble=N:strength=S:temperature=T:mix=M`
runs `UARE.restore` for restoration tasks and `UARE.assess` for IQA. Leaving out `model` uses the bundled
default model. `analyze` is the paper's analyse-then-restore prompt (Table 5); without
it the simple prompt is used; `named` tells the model the degradations each input was made
with, so the instruction names them as the paper's single and multiple degradation
instruction does ("enhance this image with low-light and noise.") where the simple
prompt of a mix is "enhance this mix-degraded image."; `color_fix=on|off` overrides the
model's colour-fix setting (to measure what it does), `refine=on|off` whether the
folder's refiner runs, `branch=on|off` whether its pixel branches may restore
(uare.model.branch), `ensemble=N` over how many flips and rotations a branch's or the
refiner's output is averaged, `strength=S` its img2img start,
`temperature=T` the scale of its starting noise, `mix=M` the share of its change the output
keeps. The model is loaded once per run.

`niqe`, `piqe` (and any other no-reference metric of `uare.metrics`) score images for
`eval iqa` and `eval monotonic`, lower is better.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ..model.branch import check_ensemble
from ..sampling import check_mix
from .cache import digest
from .methods import Method, MethodError, MethodSpec, MethodUnavailable, as_bool, register_method


def _default_loader(folder: Optional[str]):
    try:
        from uare import UARE
    except ImportError as e:
        raise MethodUnavailable(f"uare: the model pipeline is not available in this build ({e})") from None
    try:
        return UARE.from_pretrained(folder) if folder else UARE.from_pretrained()
    except (OSError, ValueError) as e:
        raise MethodUnavailable(f"uare: cannot load model {folder or '(bundled default)'}: {e}") from None


def folder_state(folder) -> str:
    """A digest of a model folder's files (weights, config, inference.json, tokenizer; not
    its README or other docs, which decide no output), so a cached eval result is not
    reused once any of them changed: the bytes of files up to 256 MB, the size and
    modification time of larger ones (a 7B checkpoint's shards); "" for no folder."""
    if folder is None or not Path(folder).is_dir():
        return ""
    small, large = [], []
    for p in sorted(Path(folder).iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix not in (".md", ".txt"):
            st = p.stat()
            if st.st_size <= 256 << 20:
                small.append(p)
            else:
                large.append((p.name, st.st_size, st.st_mtime_ns))
    return digest(small, {"names": [p.name for p in small], "large": large})


def share(value):
    """mix=M: a share in [0, 1] or auto (the name shows in a bad option's message)."""
    return check_mix(value)


def ensemble_size(value) -> int:
    """A self-ensemble size of a branch or the refiner: 1, 2, 4 or 8 (named so in an
    option's error)."""
    return check_ensemble(value)


@register_method("uare")
class UareMethod(Method):
    """Our model: options model=DIR, steps=N, analyze, named, prompt=TEXT, seed=S,
    task=auto, color_fix=on|off, refine=on|off, branch=on|off, ensemble=N, strength=S,
    temperature=T, mix=M."""

    name = "uare"
    takes_types = True
    tasks = frozenset({"auto", "iqa"})
    # Replaced in tests by a fake; takes the model folder (or None) and returns an object
    # with .restore(image, task=, prompt=, analyze=, steps=, seed=) and .assess(image).
    loader: Callable = staticmethod(_default_loader)

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(("model", "steps", "analyze", "named", "prompt", "seed", "task", "color_fix",
                            "strength", "temperature", "mix", "refine", "branch", "ensemble"))
        self.steps = self.option("steps", None, int)
        self.analyze = self.option("analyze", False, as_bool)
        self.prompt = self.option("prompt", None, str)
        self.seed = self.option("seed", 0, int)
        self.task_override = self.option("task", None, str)
        self.color_fix = self.option("color_fix", None, as_bool)
        self.refine = self.option("refine", None, as_bool)
        self.branch = self.option("branch", None, as_bool)
        self.ensemble = self.option("ensemble", None, ensemble_size)
        self.named = self.option("named", False, as_bool)
        self.strength = self.option("strength", None, float)
        self.temperature = self.option("temperature", None, float)
        self.mix = self.option("mix", None, share)
        self.model = type(self).loader(self.option("model", None, str))
        self._state = folder_state(getattr(self.model, "folder", None))

    def state(self) -> str:
        return self._state

    def restore(self, image, task, scale=1, types=()):
        extra = {}
        for key in ("color_fix", "refine", "branch", "ensemble", "strength", "temperature", "mix"):
            if getattr(self, key) is not None:
                extra[key] = getattr(self, key)
        if self.named and types:
            extra["types"] = list(types)
        result = self.model.restore(image, task=self.task_override or task, prompt=self.prompt,
                                    analyze=self.analyze, steps=self.steps, seed=self.seed, **extra)
        self.last_text = getattr(result, "text", None)
        out = result.image.convert("RGB")
        want = (image.width * scale, image.height * scale)
        if out.size != want:
            raise ValueError(f"{self.label} returned {out.size[0]}x{out.size[1]}, "
                             f"expected {want[0]}x{want[1]} for task {task}")
        return out

    def score(self, image):
        assessment = self.model.assess(image)
        self.last_text = getattr(assessment, "text", None)
        return float(assessment.score)


class MetricIQA(Method):
    """A no-reference metric of `uare.metrics` used as an IQA method."""

    tasks = frozenset({"iqa"})
    # Tests swap this for a fake registry: name -> metric object (callable, .lower_better).
    metric_factory: Optional[Callable] = None

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.check_options(())
        factory = type(self).metric_factory or _uare_metric
        self.metric = factory(spec.name)
        if getattr(self.metric, "mode", "NR") != "NR":
            raise MethodError(f"{spec.name} is a full-reference metric; IQA needs a no-reference one")
        self.lower_better = bool(getattr(self.metric, "lower_better", False))

    def score(self, image):
        return float(self.metric(image))


def _uare_metric(name: str):
    try:
        from uare.metrics import create_metric
    except ImportError as e:
        raise MethodUnavailable(f"{name}: uare.metrics is not available in this build ({e})") from None
    try:
        return create_metric(name)
    except (OSError, ImportError, RuntimeError) as e:   # e.g. weights not present
        raise MethodUnavailable(f"{name}: {e}") from None


for _name in ("niqe", "piqe", "brisque"):
    register_method(_name, f"{_name.upper()} (no-reference metric, lower is better) as an IQA method")(MetricIQA)
