"""Train the tiny model's byte-level BPE on the project's own instruction/response/IQA texts.

    python scripts/train_tokenizer.py runs/tiny-data -o runs/tiny/tokenizer [--vocab 4096]

Texts come from the data generators themselves (uare.data.instructions / responses / iqa)
driven by the degradation records of the manifest lines, so the merges follow exactly the
words the model will read and write. A record depends on (preset, seed) only through the
sampled parameters, so it is made by degrading a small synthetic image: no training image
is decoded. Deterministic: same manifests, same tokenizer.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

from uare.data import instructions, iqa, responses
from uare.degradations import degrade
from uare.tokenizer import train_tokenizer


def manifest_lines(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("manifest-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{folder}: no manifest-*.jsonl (run `uare data build` first)")
    return rows


def texts_for(record: dict | None, seed: int) -> list[str]:
    """Every text a training sample built on this record can contain."""
    rng = random.Random(seed)
    out = [iqa.synthetic_scoring_sample(record, seed).question, iqa.synthetic_scoring_sample(record, seed).answer,
           iqa.description_sample(record, seed).question]
    if record is None:
        return out
    out += [instructions.simple_instruction(record, rng), instructions.analyze_instruction(rng),
            responses.analysis(record, seed).text]
    q = (rng.uniform(1, 5), rng.uniform(1, 5))
    desc = responses.describe_degradations(record, seed)
    c = iqa.comparison_sample((rng.random(), rng.random()), q, (desc, desc), seed)
    return out + [c.question, c.answer]


def corpus(rows: list[dict], limit: int) -> list[str]:
    """Texts for up to `limit` manifest lines (evenly spread), plus every fixed pool."""
    base = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    step = max(1, len(rows) // limit)
    texts: list[str] = []
    for row in rows[::step]:
        record = degrade(base, row["preset"], seed=row["seed"])[1] if row.get("preset") else None
        texts += texts_for(record, row["seed"])
    texts += list(instructions.ANALYZE_INSTRUCTIONS) + list(iqa.SCORE_QUESTIONS)
    texts += list(iqa.DESCRIBE_QUESTIONS) + list(iqa.COMPARE_QUESTIONS) + list(iqa.CLEAN_DESCRIPTIONS)
    for pool in (responses.TYPE_PHRASES, responses.ACTIONS):
        texts += [p for v in pool.values() for p in v]
    return texts + list(responses.INTENTS) + list(responses.RESULTS.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder of manifests from `uare data build`")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--limit", type=int, default=1500, help="manifest lines to draw texts from")
    args = ap.parse_args(argv)
    texts = corpus(manifest_lines(args.data), args.limit)
    tok = train_tokenizer(texts, args.vocab)
    args.out.mkdir(parents=True, exist_ok=True)
    tok.save(args.out)
    n = sum(len(tok.encode(t)) for t in texts)
    print(f"{len(texts)} texts, {sum(map(len, texts))} chars -> {n} tokens; vocab {tok.vocab_size} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
