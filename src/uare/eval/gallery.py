"""A static HTML gallery of an evaluation: input | methods | ground truth, per image,
with a before/after slider, per-image metrics under each tile.

One self-contained file (inline CSS and a few lines of JS, no network, no external
assets) that opens from disk: images are linked by paths relative to the run folder.
The input is drawn with nearest-neighbour scaling, so an SR input looks as coarse as it is.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from ..imageio import write_text
from .report import DIGITS, Column

CSS = """
body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:20px} h2{font-size:15px;margin:18px 0 6px}
.row{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;padding-bottom:6px}
figure{margin:0;flex:0 0 auto;width:var(--tile,200px)}
figure img{width:100%;display:block;border:1px solid #ccc;background:#eee}
figcaption{font-size:11px;line-height:1.35;margin-top:3px}
figcaption b{font-size:12px}
details{white-space:pre-wrap;max-height:200px;overflow:auto}
img.lq{image-rendering:pixelated}
.ba{position:relative;width:var(--slider,360px);flex:0 0 auto}
.ba img{width:100%;display:block;border:1px solid #ccc}
.ba .after{position:absolute;top:0;left:0;clip-path:inset(0 0 0 var(--pos,50%))}
.ba input[type=range]{width:100%;margin:4px 0 0}
.ba .bar{position:absolute;top:0;bottom:30px;left:var(--pos,50%);width:2px;background:#fff;box-shadow:0 0 3px #000;pointer-events:none}
.controls{font-size:12px}
"""

JS = """
function slide(r){r.closest('.ba').style.setProperty('--pos', r.value + '%');}
function pick(s){var ba=s.closest('.item').querySelector('.ba .after');ba.src=s.value;}
function tile(v){document.body.style.setProperty('--tile', v + 'px');}
"""


def _href(path, root: Path) -> str:
    """Path -> URL relative to the gallery file (works when opened from disk)."""
    rel = os.path.relpath(Path(path).resolve(), root.resolve())
    return quote(Path(rel).as_posix())


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    return f"{key.upper()} {value:.{DIGITS.get(key, 3)}f}"


def _figure(src: str, title: str, lines: Sequence[tuple[str, bool]], lq: bool = False,
            text: str | None = None) -> str:
    """lines: (text, is_best_in_row) per metric; text: the method's analysis, folded."""
    cls = ' class="lq"' if lq else ""
    caption = "<br>".join(f"<b>{html.escape(t)}</b>" if best else html.escape(t) for t, best in lines)
    if text:
        caption += f"<details><summary>analysis</summary>{html.escape(text)}</details>"
    return (f'<figure><img{cls} loading="lazy" src="{src}" alt="{html.escape(title)}">'
            f"<figcaption><b>{html.escape(title)}</b><br>{caption}</figcaption></figure>")


def _best(recs: list[dict], columns: Sequence[Column]) -> dict[str, float]:
    """Best value of each metric among this image's methods (bold in the captions)."""
    best = {}
    for col in columns:
        vals = [r[col.key] for r in recs if isinstance(r.get(col.key), float) and r[col.key] == r[col.key]]
        if len(vals) > 1:
            best[col.key] = min(vals) if col.lower_better else max(vals)
    return best


def _item_html(key: str, recs: list[dict], labels: Sequence[str], columns: Sequence[Column],
               root: Path) -> str:
    by_method = {r["method"]: r for r in recs}
    best = _best(recs, columns)
    first = recs[0]
    lq = _href(first["lq"], root)
    tiles = [_figure(lq, "input", [], lq=True)]
    options = []
    for label in labels:
        r = by_method.get(label)
        if r is None:
            continue
        src = quote(r["output"])
        lines = [(_fmt(c.key, r[c.key]), best.get(c.key) == r[c.key]) for c in columns if c.key in r]
        tiles.append(_figure(src, label, lines, text=r.get("text")))
        options.append((src, label))
    if first.get("ref"):
        ref = _href(first["ref"], root)
        tiles.append(_figure(ref, "ground truth", []))
        options.append((ref, "ground truth"))
    # "after" starts on the last method listed (usually the one under study), not GT.
    methods_only = options[:-1] if first.get("ref") else options
    after = methods_only[-1][0] if methods_only else lq
    select = "".join(f'<option value="{s}"{" selected" if s == after else ""}>{html.escape(t)}</option>'
                     for s, t in options)
    slider = (f'<div class="ba"><img class="lq" src="{lq}" alt="before">'
              f'<img class="after" src="{after}" alt="after"><div class="bar"></div>'
              f'<input type="range" min="0" max="100" value="50" oninput="slide(this)" '
              f'aria-label="before/after"></div>')
    controls = (f'<div class="controls">before: input &nbsp; after: '
                f'<select onchange="pick(this)">{select}</select></div>')
    return (f'<section class="item"><h2>{html.escape(key)}</h2>{controls}'
            f'<div class="row">{slider}{"".join(tiles)}</div></section>')


def write_gallery(out: Path, title: str, records: list[dict], labels: Sequence[str],
                  columns: Sequence[Column], max_rows: int = 40, name: str = "gallery.html") -> Path:
    """records: per (method, image) dicts with key, method, output (relative to `out`),
    lq and ref paths, and metric values; columns: the metrics to caption (best in bold).
    Writes OUT/<name>; returns its path."""
    out = Path(out)
    keys = list(dict.fromkeys(r["key"] for r in records))[:max_rows]
    items = [_item_html(k, [r for r in records if r["key"] == k], labels, columns, out)
             for k in keys]
    more = len(dict.fromkeys(r["key"] for r in records)) - len(keys)
    note = f"<p>{more} more images are in the per-image CSV.</p>" if more > 0 else ""
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style><script>{JS}</script></head>"
            f"<body><h1>{html.escape(title)}</h1>"
            f'<p class="controls">Each row: a before/after slider (drag it; pick what "after" shows), '
            f"then input | {' | '.join(html.escape(l) for l in labels)} | ground truth. "
            f'Tile width <input type="range" min="120" max="512" value="200" oninput="tile(this.value)"></p>'
            f"{''.join(items)}{note}</body></html>\n")
    path = out / name
    write_text(path, page)
    return path
