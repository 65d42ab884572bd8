"""Recipes: typed tree, unknown keys refused, checked overrides, bases, Table A.1 values."""
from __future__ import annotations

from pathlib import Path

import pytest

from uare.cli import main
from uare.train.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).parents[1] / "recipes"
STAGES = ["stage1-single", "stage1-multi", "stage1-high-order", "stage2-unified"]


@pytest.mark.parametrize("scale", ["paper", "tiny"])
def test_every_stage_loads(scale):
    for s in STAGES:
        r = load_recipe(str(RECIPES / scale / f"{s}.yaml"))
        assert r.name == s and r.optim.betas == (0.9, 0.95) and r.optim.eps == 1e-15
        assert r.optim.weight_decay == 0.0 and r.optim.grad_clip == 1.0
        assert r.loss.timestep_shift == 4.0 and r.loss.ce_weight == 0.25
        assert (r.data.cfg_text_drop, r.data.cfg_vit_drop, r.data.cfg_vae_drop) == (0.1, 0.1, 0.1)
        assert r.train.trainable == ("all" if s.startswith("stage2") else "restoration")


def test_paper_recipes_follow_table_a1():
    got = {s: load_recipe(str(RECIPES / "paper" / f"{s}.yaml")) for s in STAGES}
    assert [got[s].train.steps for s in STAGES] == [10000, 20000, 1500, 10000]
    assert [got[s].train.ema_decay for s in STAGES] == [0.990, 0.995, 0.995, 0.995]
    assert [got[s].optim.warmup_steps for s in STAGES] == [250, 250, 250, 500]
    assert all(got[s].optim.lr == 2e-5 for s in STAGES)
    ratios = {k: v for k, v in got["stage2-unified"].data.ratios.items() if v > 0}
    assert ratios["iqa"] + ratios["iqa_real"] == pytest.approx(0.25)
    assert (ratios["single"], ratios["multi"], ratios["high_order"], ratios["interleaved"]) == (0.05, 0.1, 0.2, 0.4)
    assert {k for k, v in got["stage1-multi"].data.ratios.items() if v > 0} == {"multi"}
    assert (got["stage1-single"].data.res_min_short, got["stage1-single"].data.res_max_long) == (512, 1024)
    assert (got["stage1-single"].data.iqa_min_short, got["stage1-single"].data.iqa_max_long) == (378, 980)


def test_unknown_keys_and_bad_types_name_the_key(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("train: {stepz: 3}\n")
    with pytest.raises(RecipeError, match=r"r.yaml.*train.*unknown key.*stepz"):
        load_recipe(str(bad))
    bad.write_text("train: {steps: many}\n")
    with pytest.raises(RecipeError, match=r"train.steps: expected int"):
        load_recipe(str(bad))
    bad.write_text("# nothing yet\n")
    with pytest.raises(RecipeError, match=r"r.yaml: the recipe is empty"):
        load_recipe(str(bad))


def test_overrides_are_checked_like_file_keys(tmp_path):
    base = RECIPES / "tiny" / "stage1-single.yaml"
    r = load_recipe(str(base), ["train.steps=7", "optim.betas=[0.8, 0.9]", "data.ratios={single: 1}"])
    assert r.train.steps == 7 and r.optim.betas == (0.8, 0.9) and r.data.ratios == {"single": 1.0}
    with pytest.raises(RecipeError, match="unknown key"):
        load_recipe(str(base), ["train.nope=1"])
    with pytest.raises(RecipeError, match="expected float"):
        load_recipe(str(base), ["optim.lr=fast"])
    # YAML 1.1 reads an exponent without a dot as a string; a float field takes it
    assert load_recipe(str(base), ["optim.lr=3e-4"]).optim.lr == 3e-4
    for bad in ("3e", "e-4", "nan", "1e-4x"):
        with pytest.raises(RecipeError, match="expected float"):
            load_recipe(str(base), [f"optim.lr={bad}"])
    with pytest.raises(RecipeError, match="key=value"):
        load_recipe(str(base), ["train.steps"])
    with pytest.raises(RecipeError, match="train.trainable must be one of"):
        load_recipe(str(base), ["train.trainable=gen"])
    with pytest.raises(RecipeError, match="data: iqa_loss 'verdict' needs score_first"):
        load_recipe(str(base), ["data.iqa_loss=verdict"])
    r = load_recipe(str(base), ["data.iqa_loss=verdict", "data.score_first=true", "data.iqa_tasks=[score]"])
    assert r.data.iqa_tasks == ("score",) and r.train.trainable == "restoration"


def test_a_variant_states_only_what_differs(tmp_path):
    (tmp_path / "a.yaml").write_text("train: {steps: 5, seed: 3}\noptim: {lr: 0.1}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntrain: {steps: 9}\n")
    r = load_recipe(str(tmp_path / "b.yaml"))
    assert (r.train.steps, r.train.seed, r.optim.lr, r.name) == (9, 3, 0.1, "b")
    (tmp_path / "c.yaml").write_text("base: c.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(str(tmp_path / "c.yaml"))


def test_train_command_reports_bad_recipes_as_usage_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert main(["train", str(RECIPES / "tiny" / "stage1-single.yaml"), "--set", "train.bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
