"""The bundled default model (weights/uare-tiny): what UARE.from_pretrained() loads with no
argument, its shape is the `tiny` preset, it stays within the 60 MB budget, and it runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from uare.model import get_config
from uare.pipeline import DEFAULT_FOLDERS, UARE

FOLDER = Path(__file__).resolve().parents[1] / "weights" / "uare-tiny"
pytestmark = pytest.mark.skipif(not (FOLDER / "config.json").exists(),
                                reason="weights/uare-tiny is not in this checkout")


def test_bundled_folder_is_the_default_and_under_60_mb():
    assert FOLDER in DEFAULT_FOLDERS
    total = sum(p.stat().st_size for p in FOLDER.iterdir() if p.is_file())
    assert total <= 60_000_000, f"{total / 1e6:.1f} MB"


def test_bundled_model_has_the_tiny_shape_and_a_trained_autoencoder_scale(monkeypatch):
    monkeypatch.delenv("UARE_MODEL", raising=False)
    m = UARE.from_pretrained(device="cpu")
    tiny = get_config("tiny")
    assert m.cfg.llm == tiny.llm and m.cfg.vit == tiny.vit
    assert m.cfg.max_latent_size == tiny.max_latent_size
    assert m.cfg.vae.scale_factor != 1.0   # set from the trained latents' statistics
    assert m.tok.vocab_size <= m.cfg.llm.vocab_size


def test_bundled_model_assesses_and_restores_a_small_photo(monkeypatch, astronaut):
    monkeypatch.delenv("UARE_MODEL", raising=False)
    m = UARE.from_pretrained(device="cpu")
    img = astronaut[:64, :64]
    a = m.assess(img)
    assert 1.0 <= a.score <= 5.0 and a.level and a.text
    r = m.restore(img, task="denoise", steps=2)
    assert r.image.size == (64, 64)
