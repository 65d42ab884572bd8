"""`make demo` (uare.demo): assess, restore and analyse-then-restore the bundled example with
the model that UARE.from_pretrained() finds, writing every output and naming where it went."""
from __future__ import annotations

import pytest

from uare import demo
from uare.imageio import load_image, save_image


@pytest.fixture
def small_example(tmp_path, monkeypatch, astronaut):
    """The demo on a 64x64 crop of a public-domain photo: same flow, a fraction of the time."""
    path = save_image(astronaut[80:144, 200:264], tmp_path / "example.png")
    monkeypatch.setattr(demo, "example_image_path", lambda: path)
    return path


def test_demo_writes_assessment_restorations_and_analysis(tmp_path, monkeypatch, capsys, small_example):
    from tests.test_pipeline import save_test_model

    monkeypatch.setenv("UARE_MODEL", str(save_test_model(tmp_path / "model")))
    monkeypatch.setattr(demo, "OUT", tmp_path / "out")
    assert demo.main() == 0
    out = capsys.readouterr().out
    example = load_image(demo.example_image_path())
    for name in ("degraded", "restored", "restored-analyze"):
        path = tmp_path / "out" / f"{name}.png"
        assert str(path) in out
        assert load_image(path).size == example.size
    assert (tmp_path / "out" / "restored-analyze.txt").read_text().strip()
    assert "assess example: score" in out and "assess degraded: score" in out


def test_demo_without_a_model_says_how_to_get_one(tmp_path, monkeypatch, capsys, small_example):
    from uare import pipeline

    monkeypatch.delenv("UARE_MODEL", raising=False)
    monkeypatch.setattr(pipeline, "DEFAULT_FOLDERS", (tmp_path / "none",))
    monkeypatch.setattr(demo, "OUT", tmp_path / "out")
    assert demo.main() == 1
    assert "no model to run" in capsys.readouterr().err
    assert (tmp_path / "out" / "degraded.png").exists()
