"""Fakes shared by the eval tests (no tests here): a metric registry, a degradation, methods."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from uare.eval.methods import Method, register_method


@dataclass
class FakeMetric:
    name: str
    mode: str
    lower_better: bool
    fn: object

    def __call__(self, *images, **kw):
        return self.fn(*images)


def _psnr(pred, ref):
    mse = np.mean((np.asarray(pred, float) - np.asarray(ref, float)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def _mae(pred, ref):
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(ref, float))))


def _roughness(img):
    """High-frequency energy: grows with noise (a lower-is-better NR stand-in)."""
    a = np.asarray(img, float).mean(axis=2)
    return float(np.mean(np.abs(np.diff(a, axis=0))) + np.mean(np.abs(np.diff(a, axis=1))))


FAKE_METRICS = {
    "psnr": FakeMetric("psnr", "FR", False, _psnr),
    "mae": FakeMetric("mae", "FR", True, _mae),
    "rough": FakeMetric("rough", "NR", True, _roughness),
}


def fake_factory(name, **options):
    from uare.eval.scoring import MetricUnavailable
    if name not in FAKE_METRICS:
        raise MetricUnavailable(f"{name}: no such fake metric")
    return FAKE_METRICS[name]


def fake_degrade(image, preset, seed=0):
    """`single:noise:S` adds Gaussian noise of sigma 40*S; other presets: sigma 10."""
    parts = preset.split(":")
    sev = float(parts[2]) if len(parts) > 2 else 0.25
    arr = np.asarray(image, float)
    noisy = arr + np.random.default_rng(seed).normal(0, 40 * sev, arr.shape)
    out = Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    rec = {"preset": preset, "seed": seed, "scale": 1, "input_size": list(image.size),
           "output_size": list(image.size),
           "steps": [{"type": "noise", "op": "gaussian", "params": {"sigma": 40 * sev}}],
           "severity": {"noise": sev}}
    return out, rec


@register_method("fake_smooth")
class FakeSmooth(Method):
    """Box blur then nearest upscale; counts calls (class-wide) for cache tests."""

    name = "fake_smooth"
    tasks = frozenset({"auto"})
    calls = 0
    fail_on_call = None          # raise KeyboardInterrupt on this call number

    def restore(self, image, task, scale=1):
        FakeSmooth.calls += 1
        if FakeSmooth.fail_on_call == FakeSmooth.calls:
            raise KeyboardInterrupt
        from PIL import ImageFilter
        out = image.filter(ImageFilter.BoxBlur(1))
        return out.resize((image.width * scale, image.height * scale), Image.NEAREST)


@register_method("rough_iqa")
class RoughIQA(Method):
    """IQA stand-in: roughness, lower is better."""

    name = "rough_iqa"
    tasks = frozenset({"iqa"})
    lower_better = True

    def score(self, image):
        return _roughness(image)
