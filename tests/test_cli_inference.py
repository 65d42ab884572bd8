"""`uare assess / compare / restore` end to end on a small random model folder: output
files, sizes and JSON, exit codes, and bad inputs reported while the batch goes on."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from test_pipeline import FAST, one_thread, save_test_model  # noqa: F401 (autouse fixture)
from uare import pipeline
from uare.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_test_model(tmp_path_factory.mktemp("uare-cli-model"), {**FAST, "steps": 2})


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height and that holds no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture
def mixed_folder(tmp_path, small_photo):
    """Good, grey, RGBA and 16-bit images next to corrupt, empty and huge-header files."""
    d = tmp_path / "in"
    d.mkdir()
    img = small_photo[:24, :32]
    Image.fromarray(img).save(d / "a_good.png")
    Image.fromarray(img[..., 0]).save(d / "b_grey.png")
    Image.fromarray(np.dstack([img, np.full(img.shape[:2], 128, np.uint8)])).save(d / "c_rgba.png")
    Image.fromarray((img[..., 1].astype(np.uint16) * 257)).save(d / "d_sixteen.png")
    (d / "e_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (d / "f_empty.png").write_bytes(b"")
    _png_header_only(d / "g_huge.png", 100_000, 100_000)   # past Pillow's own bomb guard
    _png_header_only(d / "h_big.png", 9_000, 9_000)         # past uare's 64-megapixel limit
    return d


GOOD = ("a_good", "b_grey", "c_rgba", "d_sixteen")
BAD = {"e_corrupt": "cannot read image", "f_empty": "empty file", "g_huge": "decompression bomb",
       "h_big": "over the limit"}


def _json_lines(out):
    return [json.loads(line) for line in out.strip().splitlines()]


def test_assess_json_gives_one_object_per_input_and_names_each_failure(model_dir, mixed_folder, capsys):
    code = main(["assess", str(mixed_folder), "--model", str(model_dir), "--json"])
    out, err = capsys.readouterr()
    rows = {r["image"].rsplit("/", 1)[-1].split(".")[0]: r for r in _json_lines(out)}
    assert code == 1
    assert set(rows) == set(GOOD) | set(BAD)
    for name in GOOD:
        assert 1.0 <= rows[name]["score"] <= 5.0 and rows[name]["level"] and "error" not in rows[name]
    for name, reason in BAD.items():
        assert reason in rows[name]["error"] and name in rows[name]["error"]
        assert name in err
    assert "4 of 8 inputs failed" in err


def test_assess_human_output_is_one_line_per_image(model_dir, tmp_path, small_photo, capsys):
    Image.fromarray(small_photo[:24, :24]).save(tmp_path / "x.png")
    assert main(["assess", str(tmp_path / "x.png"), "--model", str(model_dir)]) == 0
    line = capsys.readouterr().out.strip().split("\t")
    assert line[0].endswith("x.png") and 1.0 <= float(line[1]) <= 5.0


def test_restore_folder_writes_pngs_and_analysis_text_and_goes_past_bad_files(model_dir, mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["restore", str(mixed_folder), "-o", str(out), "--analyze", "--task", "denoise",
                 "--model", str(model_dir), "--json"])
    rows = _json_lines(capsys.readouterr().out)
    assert code == 1
    done = {r["image"].rsplit("/", 1)[-1].split(".")[0]: r for r in rows if "output" in r}
    assert set(done) == set(GOOD)
    for name, r in done.items():
        with Image.open(r["output"]) as im:
            assert im.size == (32, 24) and im.mode == "RGB"
        assert (out / f"{name}.txt").read_text().strip() == r["text"].strip()
    assert len([r for r in rows if "error" in r]) == len(BAD)


def test_restore_one_file_to_a_file_with_sr_and_the_same_seed_twice(model_dir, tmp_path, small_photo, capsys):
    src = tmp_path / "lr.png"
    Image.fromarray(small_photo[:14, :15]).save(src)
    for name in ("one.png", "two.png"):
        assert main(["restore", str(src), "-o", str(tmp_path / name), "--task", "sr", "--seed", "5",
                     "--model", str(model_dir)]) == 0
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("one.png", "two.png"))
    assert a.shape == (56, 60, 3) and np.array_equal(a, b)
    assert not (tmp_path / "one.txt").exists()
    outs = {}
    for fix in ("on", "off"):
        assert main(["restore", str(src), "-o", str(tmp_path / f"{fix}.png"), "--task", "sr", "--seed", "5",
                     "--model", str(model_dir), "--color-fix", fix]) == 0
        outs[fix] = np.asarray(Image.open(tmp_path / f"{fix}.png")).astype(float)
    # the test model has no colour fix of its own: off is its default, on moves its mean
    # colour towards the bicubic input's
    assert np.array_equal(outs["off"], a)
    # no refiner in the test model's folder: off changes nothing, on is refused up front
    assert main(["restore", str(src), "-o", str(tmp_path / "r.png"), "--task", "sr", "--seed", "5",
                 "--model", str(model_dir), "--refine", "off"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "r.png")), a)
    assert main(["restore", str(src), "-o", str(tmp_path / "r2.png"), "--model", str(model_dir),
                 "--refine", "on"]) == 2
    assert "has no refiner" in capsys.readouterr().err and not (tmp_path / "r2.png").exists()
    capsys.readouterr()
    assert main(["restore", str(src), "-o", str(tmp_path / "t.png"), "--task", "derain", "--types", "raindrop",
                 "--model", str(model_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt"] == "enhance this image with raindrops."
    assert main(["restore", str(src), "-o", str(tmp_path / "u.png"), "--types", "raindrop,smudge",
                 "--model", str(model_dir)]) == 2
    assert "--types: unknown smudge" in capsys.readouterr().err
    assert main(["restore", str(src), "-o", str(tmp_path / "s1.png"), "--task", "sr", "--seed", "5",
                 "--model", str(model_dir), "--strength", "1"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s1.png")), a)   # 1: from pure noise
    assert main(["restore", str(src), "-o", str(tmp_path / "s5.png"), "--task", "sr", "--seed", "5",
                 "--model", str(model_dir), "--strength", "0.5"]) == 0
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "s5.png")), a)
    assert main(["restore", str(src), "-o", str(tmp_path / "s0.png"), "--model", str(model_dir),
                 "--strength", "0"]) == 2
    assert "--strength must be in (0, 1]" in capsys.readouterr().err
    # temperature 0: sampling starts from the noise's mean, so the seed moves the output
    # only through the condition's posterior sample (this model's setting)
    seeds = {}
    for temp in ("0", "1"):
        for seed in ("1", "2"):
            assert main(["restore", str(src), "-o", str(tmp_path / f"t{temp}{seed}.png"), "--task", "sr",
                         "--seed", seed, "--model", str(model_dir), "--temperature", temp]) == 0
        t1, t2 = (np.asarray(Image.open(tmp_path / f"t{temp}{s}.png")).astype(int) for s in "12")
        seeds[temp] = np.abs(t1 - t2).mean()
    assert seeds["0"] < seeds["1"] / 4
    assert main(["restore", str(src), "-o", str(tmp_path / "t3.png"), "--model", str(model_dir),
                 "--temperature", "hot"]) == 2
    assert "--temperature must be a number in [0, 2]" in capsys.readouterr().err
    # mix 0: the output is the input (here its bicubic up-sampling), whatever the model made
    assert main(["restore", str(src), "-o", str(tmp_path / "m0.png"), "--task", "sr", "--model", str(model_dir),
                 "--mix", "0"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m0.png")),
                          np.asarray(Image.open(src).convert("RGB").resize((60, 56), Image.BICUBIC)))
    assert main(["restore", str(src), "-o", str(tmp_path / "m2.png"), "--model", str(model_dir),
                 "--mix", "2"]) == 2
    assert "--mix must be in [0, 1]" in capsys.readouterr().err
    # auto: denoise keeps the share the input's noise calls for, and --json says which
    capsys.readouterr()
    assert main(["restore", str(src), "-o", str(tmp_path / "ma.png"), "--task", "denoise", "--model",
                 str(model_dir), "--mix", "auto", "--json"]) == 0
    assert 0 < json.loads(capsys.readouterr().out)["mix"] < 1
    up = np.asarray(Image.open(src).resize((60, 56), Image.BICUBIC)).astype(float)
    assert np.abs(outs["on"].mean((0, 1)) - up.mean((0, 1))).max() < np.abs(a.mean((0, 1)) - up.mean((0, 1))).max()


def test_restore_never_overwrites_an_input(model_dir, tmp_path, small_photo, capsys):
    src = tmp_path / "keep.png"
    Image.fromarray(small_photo[:16, :16]).save(src)
    before = src.read_bytes()
    assert main(["restore", str(src), "-o", str(src), "--task", "denoise", "--model", str(model_dir)]) == 1
    assert src.read_bytes() == before
    assert "refusing to overwrite an input" in capsys.readouterr().err


def test_restore_skip_existing_resumes_a_batch(model_dir, tmp_path, small_photo, capsys):
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    for n in ("p", "q"):
        Image.fromarray(small_photo[:16, :16]).save(d / f"{n}.png")
    out.mkdir()
    (out / "p.png").write_bytes(b"already there")
    assert main(["restore", str(d), "-o", str(out), "--task", "dejpeg", "--skip-existing",
                 "--model", str(model_dir), "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["q.png"]
    assert (out / "p.png").read_bytes() == b"already there"


def test_compare_json_with_a_reference(model_dir, tmp_path, small_photo, capsys):
    paths = []
    for k, arr in enumerate([small_photo[:24, :24], small_photo[24:48, :24], small_photo[:24, 24:48]]):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(arr).save(paths[-1])
    assert main(["compare", str(paths[0]), str(paths[1]), "--ref", str(paths[2]),
                 "--model", str(model_dir), "--json"]) == 0
    (row,) = _json_lines(capsys.readouterr().out)
    assert row["preferred"] in ("A", "B") and 0.5 <= row["probability"] <= 1.0 and "text" in row


def test_compare_method_scores_reports_both_scores(model_dir, tmp_path, small_photo, capsys):
    paths = []
    for k, arr in enumerate([small_photo[:24, :24], small_photo[24:48, :24]]):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(arr).save(paths[-1])
    assert main(["compare", *map(str, paths), "--method", "scores", "--model", str(model_dir), "--json"]) == 0
    (row,) = _json_lines(capsys.readouterr().out)
    assert row["method"] == "scores" and len(row["scores"]) == 2
    assert row["preferred"] == ("A" if row["scores"][0] >= row["scores"][1] else "B")
    with pytest.raises(SystemExit) as e:
        main(["compare", *map(str, paths), "--method", "votes", "--model", str(model_dir)])
    assert e.value.code == 2


def test_compare_with_a_bad_file_fails_with_its_name(model_dir, tmp_path, small_photo, capsys):
    Image.fromarray(small_photo[:16, :16]).save(tmp_path / "ok.png")
    (tmp_path / "void.png").write_bytes(b"")
    assert main(["compare", str(tmp_path / "ok.png"), str(tmp_path / "void.png"), "--model", str(model_dir)]) == 1
    assert "void.png: empty file" in capsys.readouterr().err


def test_bad_usage_exits_with_2(model_dir, tmp_path, small_photo, capsys, monkeypatch):
    Image.fromarray(small_photo[:16, :16]).save(tmp_path / "x.png")
    assert main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "y.png"), "--steps", "1",
                 "--model", str(model_dir)]) == 2
    assert main(["assess", str(tmp_path / "x.png"), "--model", str(tmp_path / "no-model")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    monkeypatch.setattr(pipeline, "DEFAULT_FOLDERS", (tmp_path / "nowhere",))
    monkeypatch.delenv("UARE_MODEL", raising=False)
    assert main(["assess", str(tmp_path / "x.png")]) == 2
    assert "no default model found" in capsys.readouterr().err
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    assert main(["assess", str(empty), "--model", str(model_dir)]) == 2


def test_the_restore_bar_counts_passes_of_the_model_over_tiles(capsys):
    # a branch's self-ensemble passes tick it as well as sampler steps: "step" misnamed them
    from uare.commands.restore import step_bar

    with step_bar("x.png") as tick:
        tick(0, 8)
    err = capsys.readouterr().err
    assert "x.png" in err and "0/8" in err and "pass/s" in err
