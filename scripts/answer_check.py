"""Check the form of the answers and analyses the model wrote during an eval run.

    python scripts/answer_check.py runs/mono-small [runs/mono-hq ...]

Scores can be right while the text around them is broken (a candidate model answered
scoring questions as comparisons, or ran on after its verdict), so candidates are
checked as text too. Reads each run's `cache.jsonl` (every answer `uare eval monotonic`
or `uare eval iqa` scored, every analysis of `uare eval restore` with `uare:analyze`) and
counts the texts that are well formed. An analysis: the paper's four parts, each on its
own line, once, in order, ending with a full stop. An assessment, for a model trained
with `data.score_first`:
- the verdict opens the answer: "Overall the quality is <level>, score <s>.";
- a description follows it;
- no comparison layout ("Image A:", "Its quality is fair", "fidelity to the reference");
- no sentence said twice, and the answer ends with a full stop (it was not cut off).
Prints the counts and the answers that fail, with their reasons; exits 1 when any fails.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from uare.pipeline import SCORE_PREFIX
from uare.sampling import LEVELS

LEVEL = f"({'|'.join(LEVELS)})"
VERDICT = re.compile(rf"^{re.escape(SCORE_PREFIX)} {LEVEL}, score \d\.\d\d\.")
ANALYSIS = re.compile(r"1\. User intent: [^\n]+\n2\. Current quality: [^\n]+\n"
                      r"3\. Enhancement plan: [^\n]+\n4\. Expected result: [^\n]+\.")
# phrases of the comparison template only (uare.data.iqa.comparison_sample)
COMPARISON = re.compile(rf"\bimage [AB]\b|\b[AB]:|its quality is {LEVEL}\b|fidelity to the reference",
                        re.IGNORECASE)


def problems(answer: str) -> list[str]:
    """What is wrong with one assessment answer or analysis; empty when it is well formed."""
    if re.match(r"\d\. \w+ \w+:", answer):   # a numbered part opens it: an analysis
        return [] if ANALYSIS.fullmatch(answer) else ["not the four parts once each"]
    found = []
    head = VERDICT.match(answer)
    if not head:
        found.append("no opening verdict")
    elif not answer[head.end():].strip():
        found.append("nothing after the verdict")
    if COMPARISON.search(answer):
        found.append("comparison layout")
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", answer) if s.strip()]
    if len(set(sentences)) < len(sentences):
        found.append("a sentence repeated")
    if not answer.rstrip().endswith("."):
        found.append("cut off")
    return found


def answers(run: Path) -> list[tuple[str, str]]:
    """(key, text) of every answer in a run's cache, the newest per key."""
    cache = run / "cache.jsonl"
    if not cache.exists():
        raise SystemExit(f"{cache}: no such file (give the -o folder of a `uare eval` run)")
    latest = {}
    for n, line in enumerate(cache.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{cache}:{n}: not JSON ({e})")
        if rec.get("text"):
            latest[(rec.get("method", ""), rec["key"])] = rec["text"]
    return [(f"{m} {k}", t) for (m, k), t in latest.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--show", type=int, default=5, help="failing answers printed per run")
    args = ap.parse_args(argv)
    failed_any = False
    for run in args.runs:
        found = answers(run)
        bad = [(k, t, p) for k, t in found if (p := problems(t))]
        failed_any |= bool(bad)
        print(f"{run}: {len(found) - len(bad)} of {len(found)} answers well formed")
        for k, t, p in bad[:args.show]:
            print(f"  {k}: {', '.join(p)}: {t[:160]!r}")
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
