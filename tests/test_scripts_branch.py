"""scripts/train_branch.py: a branch learns its degradation on held-out crops, a rerun
resumes instead of starting over, and the file it writes keeps the model's other branches
and loads in the pipeline."""
from __future__ import annotations

import json
import re

import pytest
import torch
from PIL import Image
from script_helpers import load_script

from uare.model.branch import FILENAME, Branch, BranchConfig, load_branches, save_branches


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/train_branch.py")


def photos(tmp_path, astronaut, n=4):
    torch.set_num_threads(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        y, x = 60 * i, 80 * i
        Image.fromarray(astronaut[y:y + 96, x:x + 120]).save(folder / f"p{i}.png")
    return folder


def val_row(out, name="all"):
    """(input, branch) PSNR-Y of a row of OUT/val.md."""
    row = re.search(rf"^\| {re.escape(name)} \| \d+ \| ([\d.]+) \| ([\d.]+) \|", (out / "val.md").read_text(), re.M)
    return float(row.group(1)), float(row.group(2))


def test_a_noise_branch_learns_to_beat_its_input_on_held_out_crops(script, tmp_path, astronaut):
    out = tmp_path / "run"
    args = ["--type", "noise", "--data", str(photos(tmp_path, astronaut)), "-o", str(out), "--model", "",
            "--steps", "150", "--crop", "32", "--source", "32", "--channels", "16", "--layers", "4",
            "--lr", "3e-3", "--threads", "1"]
    assert script.main(args) == 0
    before, after = val_row(out)
    assert after > before + 0.5, (before, after)   # measured: 25.69 -> 26.99


def test_camera_noise_pairs_are_a_share_of_the_noise_pairs_and_reported_apart(script, tmp_path, astronaut):
    out = tmp_path / "run"
    args = ["--type", "noise", "--data", str(photos(tmp_path, astronaut)), "-o", str(out), "--model", "",
            "--steps", "2", "--crop", "32", "--source", "32", "--channels", "8", "--layers", "4",
            "--threads", "1", "--camera", "0.5", "--residual"]
    assert script.main(args) == 0
    assert load_branches(out)["noise"].cfg.residual
    cam, preset = val_row(out, "camera all"), val_row(out, "preset all")
    assert cam[0] != preset[0]
    with pytest.raises(SystemExit, match="only for --type noise"):
        script.main(["--type", "jpeg"] + args[2:])
    with pytest.raises(SystemExit, match="share"):
        script.main(args[:-2] + ["1.5"])
    with pytest.raises(SystemExit, match="even number of layers"):
        script.main([a if a != "4" else "5" for a in args])


def test_resume_and_the_model_folders_other_branches_are_kept(script, tmp_path, astronaut):
    model = tmp_path / "model"
    model.mkdir()
    torch.manual_seed(0)
    save_branches({"raindrop": Branch(BranchConfig("raindrop", channels=8, layers=3))}, model)
    out = tmp_path / "run"
    args = ["--type", "jpeg", "--data", str(photos(tmp_path, astronaut)), "-o", str(out), "--model", str(model),
            "--crop", "32", "--source", "48", "--channels", "8", "--layers", "3", "--threads", "1"]
    assert script.main(args + ["--steps", "3"]) == 0
    assert json.loads((out / "train" / "state.json").read_text())["step"] == 3
    first = load_branches(out / "train")["jpeg"].state_dict()
    assert script.main(args + ["--steps", "5"]) == 0   # goes on from step 3, not from the start
    assert json.loads((out / "train" / "state.json").read_text())["step"] == 5
    assert any(not torch.equal(v, load_branches(out / "train")["jpeg"].state_dict()[k]) for k, v in first.items())
    both = load_branches(out)
    assert set(both) == {"jpeg", "raindrop"} and (out / FILENAME).exists()
    assert "| all |" in (out / "val.md").read_text()
    with pytest.raises(SystemExit, match="another branch"):   # another shape in the same run folder
        script.main(args[:-6] + ["--channels", "16", "--layers", "3", "--threads", "1", "--steps", "6"])
    with pytest.raises(SystemExit, match="multiple of 16"):
        script.main(args + ["--crop", "40"])


def test_relative_loss_is_each_crops_error_left_over_its_inputs(script):
    clean = torch.zeros(2, 3, 4, 4)
    lq = clean.clone()
    lq[0] += 0.1                                    # input MSE 0.01
    out = clean.clone()
    out[0] += 0.05                                  # a quarter of that left
    out[1] += 1 / 255                               # a clean crop damaged by one grey level
    grey = 255.0 ** -2
    want = (0.0025 / (0.01 + grey) + grey / grey) / 2
    assert script.relative_mse(out, clean, lq).item() == pytest.approx(want, rel=1e-5)


def test_init_starts_from_a_folders_branch_and_clean_pairs_teach_it_to_leave_them(script, tmp_path, astronaut):
    model = tmp_path / "model"
    model.mkdir()
    torch.manual_seed(0)
    start = Branch(BranchConfig("noise", channels=8, layers=4, residual=True))
    torch.nn.init.normal_(start.convs[-1].weight, std=0.05)   # a branch that changes clean crops
    save_branches({"noise": start}, model)
    data = str(photos(tmp_path, astronaut))
    args = ["--type", "noise", "--data", data, "--model", "", "--init", str(model), "--crop", "32",
            "--source", "32", "--threads", "1", "--clean", "0.5", "--loss", "relative", "--lr", "3e-3"]
    assert script.main(args + ["-o", str(tmp_path / "r0"), "--steps", "0"]) == 0
    got = load_branches(tmp_path / "r0" / "train")["noise"]
    assert got.cfg == start.cfg
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in got.state_dict().items())
    assert script.main(args + ["-o", str(tmp_path / "r1"), "--steps", "60"]) == 0
    before, after = val_row(tmp_path / "r0", "clean all")[1], val_row(tmp_path / "r1", "clean all")[1]
    assert after > before + 3, (before, after)
    with pytest.raises(SystemExit, match="has no noise branch"):
        script.main(args[:6] + ["--init", str(tmp_path / "photos"), "-o", str(tmp_path / "r2"), "--steps", "1"])
    with pytest.raises(SystemExit, match="share"):
        script.main(args + ["-o", str(tmp_path / "r3"), "--clean", "1.5"])
