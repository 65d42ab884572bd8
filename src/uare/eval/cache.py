"""Per-image results, cached so that an interrupted evaluation resumes where it stopped.

One JSONL file per run folder. Each line is one finished (method, item) result:

    {"method": "bicubic", "fp": "<method fingerprint>", "key": "img_001",
     "input": "<digest of inputs + settings>", "metrics": {...}, "output": "images/...png",
     "seconds": 0.01, "text": null}

A cached line is reused only when the method fingerprint (name + options, and for our
model the files of its folder: `Method.state`), the input digest (file bytes + metric
settings) and the saved output file all still match, so a changed method option, retrained
weights or edited inference.json, input image or metric setting is recomputed, never
silently reused.
Lines are appended and fsync'd one by one (`append_jsonl`), and a torn last line from a
killed run is ignored, so a resumed run equals a fresh one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Optional, Union

from ..imageio import append_jsonl, read_jsonl


def digest(paths: Iterable[Union[str, Path, None]] = (), extra=None) -> str:
    """sha1 over the bytes of the given files (None skipped) and a JSON-able `extra`."""
    h = hashlib.sha1()
    for p in paths:
        if p is None:
            continue
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class ResultCache:
    """Index over one run folder's `cache.jsonl`."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self.root = self.path.parent
        self._index: dict[tuple[str, str], dict] = {}
        for rec in read_jsonl(self.path):
            if "fp" in rec and "key" in rec:
                self._index[(rec["fp"], rec["key"])] = rec   # later lines win

    def __len__(self) -> int:
        return len(self._index)

    def get(self, fp: str, key: str, input_digest: str) -> Optional[dict]:
        rec = self._index.get((fp, key))
        if rec is None or rec.get("input") != input_digest:
            return None
        out = rec.get("output")
        if out and not (self.root / out).exists():
            return None
        return rec

    def put(self, rec: dict) -> dict:
        for field in ("method", "fp", "key", "input"):
            if field not in rec:
                raise ValueError(f"cache record lacks {field!r}: {rec}")
        append_jsonl(self.path, rec)
        self._index[(rec["fp"], rec["key"])] = rec
        return rec
