"""scripts/answer_check.py: assessment answers are checked for form, not only for score."""
from __future__ import annotations

import json

from test_scripts_device import _load

GOOD = "Overall the quality is poor, score 2.10. The image shows strong sensor noise."


def test_well_formed_answers_pass_and_each_fault_is_named():
    check = _load("answer_check.py")
    assert check.problems(GOOD) == []
    assert check.problems(GOOD + " Its quality is limited by noise.") == []   # a description opener
    assert check.problems("Image A: noisy. Image B: clean. Overall, image B is better.") == \
        ["no opening verdict", "comparison layout"]
    assert check.problems("Overall the quality is bad, score 1.20.") == ["nothing after the verdict"]
    assert check.problems(GOOD + " Its quality is bad A: The image") == ["comparison layout", "cut off"]
    assert check.problems(GOOD + " The image shows strong sensor noise.") == ["a sentence repeated"]
    assert check.problems("Overall the quality is great, score 9. Fine.") == ["no opening verdict"]


def test_analyses_need_the_four_parts_once_each_in_order():
    check = _load("answer_check.py")
    parts = ["1. User intent: Restore it.", "2. Current quality: The image suffers from noise.",
             "3. Enhancement plan: (1) remove the noise.", "4. Expected result: A clean image."]
    assert check.problems("\n".join(parts)) == []
    for bad in (parts[:3], parts + ["3. Enhancement plan: more."], [parts[1], parts[0], *parts[2:]],
                parts[:3] + ["4. Expected result: A clean"]):
        assert check.problems("\n".join(bad)) == ["not the four parts once each"], bad


def test_a_run_with_a_bad_answer_fails_and_names_it(tmp_path, capsys):
    check = _load("answer_check.py")
    rows = [{"method": "uare", "key": "a|clean", "text": GOOD},
            {"method": "uare", "key": "a|noise|0.5", "text": "Image A: grainy."},
            {"method": "niqe", "key": "a|clean", "text": None}]
    (tmp_path / "cache.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert check.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "1 of 2 answers well formed" in out and "a|noise|0.5: no opening verdict" in out
    (tmp_path / "cache.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert check.main([str(tmp_path)]) == 0
