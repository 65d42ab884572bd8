"""`uare serve`: the page, the JSON API, bad uploads, and the real bundled model once."""
from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from uare.commands.serve import make_server


@dataclass
class _A:
    score: float
    level: str
    text: str


@dataclass
class _C:
    preferred: str
    probability: float
    text: str
    method: str
    scores: Optional[tuple]


@dataclass
class _R:
    image: Image.Image
    text: Optional[str]
    task: str
    prompt: str = "p"


class FakeModel:
    """Brightness as the score; restore inverts the image, x4 for sr."""

    def __init__(self):
        self.calls = []

    def assess(self, image):
        self.calls.append(("assess", image.size))
        return _A(1 + 4 * float(np.asarray(image).mean()) / 255, "fair", "fake")

    def compare(self, a, b, ref=None, method=None):
        if method not in (None, "auto", "answer", "scores"):
            raise ValueError(f"compare method must be one of auto, answer, scores, got {method!r}")
        self.calls.append(("compare", a.size, b.size, None if ref is None else ref.size, method))
        sa, sb = self.assess(a).score, self.assess(b).score
        return _C("A" if sa >= sb else "B", 0.75, "fake comparison", method or "scores", (sa, sb))

    def restore(self, image, task="auto", analyze=False, steps=None, **extra):
        if task not in ("auto", "sr", "denoise"):
            raise ValueError(f"unknown task {task!r}")
        self.calls.append(("restore", task, analyze, steps))
        self.extra = extra
        out = Image.fromarray(255 - np.asarray(image))
        if task == "sr":
            out = out.resize((image.width * 4, image.height * 4))
        return _R(out, "analysis" if analyze else None, task)


@pytest.fixture
def served():
    model = FakeModel()
    server = make_server(model, port=0, max_upload=200_000, name="fake")
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", model
    server.shutdown()
    server.server_close()


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _post(url, body: bytes):
    req = urllib.request.Request(url, data=body, method="POST", headers={"X-Filename": "x.png"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_page_and_info(served):
    base, _ = served
    page = urllib.request.urlopen(base + "/", timeout=30).read().decode()
    assert "<select id=\"task\">" in page and 'value="denoise"' in page and "fake" in page
    assert 'id="compare"' in page and "/api/compare" in page
    assert 'id="types"' in page and "raindrop" in page and "{types}" not in page
    info = json.loads(urllib.request.urlopen(base + "/api/info", timeout=30).read())
    assert info["model"] == "fake" and "sr" in info["tasks"]


def test_page_script_parses(tmp_path):
    """The page's JavaScript is checked by node where it is installed (a syntax error
    would leave every button dead with no message)."""
    import shutil
    import subprocess

    from uare.commands.serve import PAGE

    if not shutil.which("node"):
        pytest.skip("node is not installed: the page's script is not checked")
    js = tmp_path / "page.js"
    js.write_text(PAGE.split("<script>", 1)[1].split("</script>", 1)[0])
    r = subprocess.run(["node", "--check", str(js)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_assess_and_restore_round_trip(served):
    base, model = served
    img = np.full((16, 24, 3), 51, np.uint8)
    status, a = _post(base + "/api/assess", _png(img))
    assert status == 200 and a["score"] == pytest.approx(1.8) and a["level"] == "fair"
    status, r = _post(base + "/api/restore?task=sr&analyze=1&steps=3", _png(img))
    assert status == 200 and r["task"] == "sr" and r["text"] == "analysis"
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(r["image"].split(",", 1)[1]))))
    assert out.shape == (64, 96, 3) and (out == 204).all()
    assert model.calls[-1] == ("restore", "sr", True, 3)
    assert model.extra == {"types": None}                # colour fix: the model's own setting
    status, r = _post(base + "/api/restore?task=denoise&types=noise,%20blur&color_fix=off&strength=0.6&refine=off",
                      _png(img))
    assert status == 200 and model.extra == {"types": ["noise", "blur"], "color_fix": False, "strength": 0.6,
                                             "refine": False}
    status, r = _post(base + "/api/restore?task=denoise&temperature=0&strength=", _png(img))
    assert status == 200 and model.extra == {"types": None, "temperature": 0.0}
    status, r = _post(base + "/api/restore?task=denoise&mix=0.5&temperature=", _png(img))
    assert status == 200 and model.extra == {"types": None, "mix": 0.5}
    status, r = _post(base + "/api/restore?task=denoise&ensemble=4&mix=", _png(img))
    assert status == 200 and model.extra == {"types": None, "ensemble": 4}
    status, r = _post(base + "/api/restore?task=denoise&ensemble=", _png(img))   # the page's "model"
    assert status == 200 and model.extra == {"types": None}


def test_compare_takes_two_images_as_json(served):
    base, model = served
    dark, bright = _png(np.full((8, 8, 3), 20, np.uint8)), _png(np.full((12, 8, 3), 200, np.uint8))
    body = {"a": base64.b64encode(dark).decode(), "b": "data:image/png;base64," + base64.b64encode(bright).decode()}
    status, c = _post(base + "/api/compare?method=scores", json.dumps(body).encode())
    assert status == 200 and c["preferred"] == "B" and c["method"] == "scores" and len(c["scores"]) == 2
    assert model.calls[-3] == ("compare", (8, 8), (8, 12), None, "scores")
    status, c = _post(base + "/api/compare", json.dumps({**body, "ref": body["a"]}).encode())
    assert status == 200 and model.calls[-3] == ("compare", (8, 8), (8, 12), (8, 8), None)
    for bad, why in ((b"{", "not JSON"), (b"[1]", "must be a JSON object"),
                     (json.dumps({"a": body["a"]}).encode(), "missing image 'b'"),
                     (json.dumps({**body, "b": "***"}).encode(), "b: not base64"),
                     (json.dumps({**body, "b": base64.b64encode(b"text").decode()}).encode(), "b: cannot read image")):
        status, e = _post(base + "/api/compare", bad)
        assert status == 400 and why in e["error"], (bad, e)
    status, e = _post(base + "/api/compare?method=votes", json.dumps(body).encode())
    assert status == 400 and "compare method" in e["error"]


def test_bad_uploads_get_a_reason_and_the_server_goes_on(served):
    base, _ = served
    status, e = _post(base + "/api/assess", b"not an image")
    assert status == 400 and "x.png: cannot read image" in e["error"]
    status, e = _post(base + "/api/restore?task=nonsense", _png(np.zeros((8, 8, 3), np.uint8)))
    assert status == 400 and "unknown task" in e["error"]
    status, e = _post(base + "/api/restore?steps=two", _png(np.zeros((8, 8, 3), np.uint8)))
    assert status == 400 and "steps" in e["error"]
    status, e = _post(base + "/api/restore?color_fix=maybe", _png(np.zeros((8, 8, 3), np.uint8)))
    assert status == 400 and "color_fix must be auto, on or off" in e["error"]
    status, e = _post(base + "/api/restore?refine=yes", _png(np.zeros((8, 8, 3), np.uint8)))
    assert status == 400 and "refine must be auto, on or off" in e["error"]
    status, e = _post(base + "/api/restore?ensemble=3", _png(np.zeros((8, 8, 3), np.uint8)))
    assert status == 400 and "ensemble must be one of 1, 2, 4, 8" in e["error"]
    for bad in ("strong", "0", "1.5"):
        status, e = _post(base + f"/api/restore?strength={bad}", _png(np.zeros((8, 8, 3), np.uint8)))
        assert status == 400 and "strength must be" in e["error"]
    for bad in ("hot", "-1", "3"):
        status, e = _post(base + f"/api/restore?temperature={bad}", _png(np.zeros((8, 8, 3), np.uint8)))
        assert status == 400 and "temperature must be" in e["error"]
    for bad in ("half", "-0.5", "1.5"):
        status, e = _post(base + f"/api/restore?mix={bad}", _png(np.zeros((8, 8, 3), np.uint8)))
        assert status == 400 and "mix must be" in e["error"]
    status, e = _post(base + "/api/assess", b"\0" * 300_000)
    assert status == 413 and "over the limit" in e["error"]
    status, a = _post(base + "/api/assess", _png(np.zeros((8, 8, 3), np.uint8)))
    assert status == 200  # still serving


def test_serve_runs_the_bundled_model(monkeypatch, astronaut):
    from uare import UARE

    monkeypatch.delenv("UARE_MODEL", raising=False)
    server = make_server(UARE.from_pretrained(device="cpu"), port=0, name="bundled")
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        status, a = _post(base + "/api/assess", _png(astronaut[:128, :128]))
        assert status == 200 and 1.0 <= a["score"] <= 5.0 and a["text"]
        status, r = _post(base + "/api/restore?task=denoise", _png(astronaut[:64, :64]))
        assert status == 200 and (r["width"], r["height"]) == (64, 64)
        status, c = _post(base + "/api/compare", json.dumps({"a": r["image"], "b": base64.b64encode(
            _png(astronaut[:64, :64])).decode()}).encode())
        assert status == 200 and c["preferred"] in ("A", "B") and c["method"] == "scores"
    finally:
        server.shutdown()
        server.server_close()
