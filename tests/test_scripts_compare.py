"""scripts/compare_runs.py on made-up eval_tiny run folders."""
from __future__ import annotations

from pathlib import Path

import pytest
from script_helpers import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/compare_runs.py")


def _run(root: Path, name: str, sr: tuple[float, float], jpeg: float, noise: float, jpeg_simple: float = 0.0) -> Path:
    """A folder with the SR table (PSNR-Y, NIQE; bicubic 30.0, 10.0) and a singles table
    (inputs: jpeg 30.0, noise 20.0) as `scripts/eval_tiny.sh` writes them."""
    d = root / name
    (d / "sr-drealsr").mkdir(parents=True)
    (d / "sr-drealsr" / "sr.csv").write_text(
        "test_dataset,method,psnr,niqe,seconds,best\n"
        "drealsr_x4,bicubic,30.00,10.0,0.00,\n"
        f"drealsr_x4,uare(model=weights/m),{sr[0]:.2f},{sr[1]},1.0,\n")
    (d / "single-set5_x4").mkdir()
    rows = ["test_dataset,method,psnr,seconds,best"]
    for preset, inp, got in (("single:jpeg", 30.0, jpeg), ("single:noise", 20.0, noise)):
        rows += [f"set5_x4 {preset},bicubic,{inp:.2f},0.00,",
                 f"set5_x4 {preset},uare(model=weights/m),{jpeg_simple or got:.2f},1.0,",
                 f'set5_x4 {preset},"uare(model=weights/m,named)",{got:.2f},1.0,']
    (d / "single-set5_x4" / "restore.csv").write_text("\n".join(rows) + "\n")
    return d


def test_the_rule_needs_a_gain_and_no_loss(script, tmp_path, capsys):
    base = _run(tmp_path, "base", sr=(29.0, 9.0), jpeg=29.5, noise=25.0)      # passes: NIQE, noise
    gain = _run(tmp_path, "gain", sr=(29.5, 9.5), jpeg=30.2, noise=24.0)      # + jpeg, noise kept
    lose = _run(tmp_path, "lose", sr=(30.5, 9.0), jpeg=29.9, noise=19.0)      # + SR PSNR, - noise
    same = _run(tmp_path, "same", sr=(29.0, 11.0), jpeg=29.9, noise=25.0)     # - NIQE
    assert script.main([str(base), str(gain)]) == 0
    out = capsys.readouterr().out
    assert "set5_x4 single:jpeg PSNR-Y | 30.00 | 29.50 fail | 30.20 pass **gained**" in out
    assert ("4 rows: passing 2 -> 3; lost 0, gained 1; CAND better on 2, worse on 2: "
            "CAND passes the rule (gain)") in out
    assert script.main([str(base), str(lose)]) == 1
    assert "(gain: loses a passing row)" in capsys.readouterr().out
    assert script.main([str(base), str(same)]) == 1
    assert "drealsr_x4 NIQE | 10.00 | 9.00 pass | 11.00 fail **lost**" in capsys.readouterr().out
    assert script.main([str(base), str(base)]) == 1
    assert "(gain: gains no failing row)" in capsys.readouterr().out


def test_the_keep_rule_needs_no_loss_and_more_rows_better(script, tmp_path, capsys):
    base = _run(tmp_path, "base", sr=(29.0, 9.0), jpeg=29.5, noise=25.0)      # passes: NIQE, noise
    up = _run(tmp_path, "up", sr=(29.2, 8.5), jpeg=29.8, noise=25.0)          # 3 better, noise equal
    mostly_down = _run(tmp_path, "down", sr=(28.9, 9.5), jpeg=29.8, noise=24.0)
    lose = _run(tmp_path, "lose", sr=(29.5, 8.0), jpeg=29.9, noise=19.0)      # 3 better, noise lost
    assert script.main([str(base), str(up)]) == 1                             # no gain: the old rule
    capsys.readouterr()
    assert script.main([str(base), str(up), "--rule", "keep"]) == 0
    assert "CAND better on 3, worse on 0: CAND passes the rule (keep)" in capsys.readouterr().out
    assert script.main([str(base), str(mostly_down), "--rule", "keep"]) == 1
    assert "(keep: not better on more rows than worse)" in capsys.readouterr().out
    assert script.main([str(base), str(lose), "--rule", "keep"]) == 1
    assert "(keep: loses a passing row)" in capsys.readouterr().out


def test_prompt_picks_the_method(script, tmp_path, capsys):
    base = _run(tmp_path, "base", sr=(29.0, 9.0), jpeg=29.5, noise=25.0, jpeg_simple=29.0)
    cand = _run(tmp_path, "cand", sr=(29.0, 9.0), jpeg=29.5, noise=25.0, jpeg_simple=30.5)
    assert script.main([str(base), str(cand)]) == 1                     # named: nothing moved
    assert script.main([str(base), str(cand), "--prompt", "simple"]) == 0
    assert "30.50 pass **gained**" in capsys.readouterr().out


def test_a_folder_without_tables_is_an_error(script, tmp_path, capsys):
    base = _run(tmp_path, "base", sr=(29.0, 9.0), jpeg=29.5, noise=25.0)
    (tmp_path / "empty").mkdir()
    assert script.main([str(base), str(tmp_path / "empty")]) == 2
    assert "empty: no eval table" in capsys.readouterr().err


def test_method_kinds_read_from_eval_labels(script):
    assert script._kind("bicubic") == "input"
    assert script._kind("uare") == script._kind("uare(model=weights/m)") == "simple"
    assert script._kind("uare(named)") == script._kind("uare(model=weights/m,named)") == "named"
    assert script._kind("uare(model=weights/m,steps=8,analyze)") == "analyze"
    assert script._kind("realesrgan") == "other"


def _mixed(d: Path, simple: tuple, guided: tuple) -> None:
    """A mixed table of two mixes: (PSNR-Y, NIQE) of the simple and the guided prompt, each
    the same on both mixes; inputs 15.0 / 12.0."""
    (d / "mixed-set5_x4").mkdir()
    rows = ["test_dataset,method,psnr,niqe,seconds,best"]
    for preset in ("multi:blur+noise", "multi:lowlight+haze"):
        rows += [f"set5_x4 {preset},bicubic,15.00,12.0,0.00,",
                 f"set5_x4 {preset},uare(model=weights/m),{simple[0]:.2f},{simple[1]},1.0,",
                 f'set5_x4 {preset},"uare(model=weights/m,analyze)",{guided[0]:.2f},{guided[1]},1.0,',
                 f'set5_x4 {preset},"uare(model=weights/m,named)",20.00,7.0,1.0,']
    (d / "mixed-set5_x4" / "restore.csv").write_text("\n".join(rows) + "\n")


def _cc15(d: Path, model: list, nlm: list) -> None:
    """cc15/uare.csv and cc15/nlmeans.csv as `uare metrics --csv` writes them."""
    (d / "cc15").mkdir()
    for name, vals in (("uare", model), ("nlmeans", nlm)):
        lines = ["name,pred,ref,psnr,error"] + [f"im{i},p{i}.png,r{i}.png,{v},," for i, v in enumerate(vals)]
        (d / "cc15" / f"{name}.csv").write_text("\n".join(lines) + "\n")


def test_guided_against_simple_and_real_noise_against_nlm_are_rows(script, tmp_path, capsys):
    base = _run(tmp_path, "base", sr=(29.0, 9.0), jpeg=29.5, noise=25.0)
    _mixed(base, simple=(17.0, 7.5), guided=(18.0, 7.0))          # guided wins on both
    _cc15(base, model=[37.0, 38.0], nlm=[38.0, 39.0])             # 37.5 vs 38.5: fails
    niqe_only = _run(tmp_path, "niqe", sr=(29.0, 9.0), jpeg=29.5, noise=25.0)
    _mixed(niqe_only, simple=(17.0, 7.5), guided=(16.5, 7.0))     # lower PSNR, better NIQE: passes
    _cc15(niqe_only, model=[39.0, 38.5], nlm=[38.0, 39.0])        # 38.75 vs 38.5: gained
    neither = _run(tmp_path, "neither", sr=(29.0, 9.0), jpeg=29.5, noise=25.0)
    _mixed(neither, simple=(17.0, 7.0), guided=(16.9, 7.2))       # guided loses on both
    assert script.main([str(base), str(niqe_only)]) == 0
    out = capsys.readouterr().out
    assert "| set5_x4 mixes guided vs simple PSNR-Y (or NIQE) | 17.00 | 18.00 pass | 16.50 pass |" in out
    assert "| real_noise_cc15 PSNR-Y (against NLM) | 38.50 | 37.50 fail | 38.75 pass **gained** |" in out
    assert script.main([str(base), str(neither)]) == 1
    out = capsys.readouterr().out
    assert "18.00 pass | 16.90 fail **lost**" in out
    assert "rows in one folder only (not compared): real_noise_cc15 PSNR-Y (against NLM)" in out
