"""`uare serve [--model DIR] [--host H] [--port P]`: a local web page to assess, compare and restore.

Standard library only (http.server), so the page costs no dependency. The browser posts
the image's bytes; the model answers one request at a time (a lock: on a 2-core CPU two
at once would only slow both). JSON API, also usable without the page:

    POST /api/assess                      body: image bytes -> {score, level, text, seconds}
    POST /api/restore?task=T&analyze=1&steps=N&types=A,B&color_fix=on|off&refine=on|off&branch=on|off&ensemble=N&strength=S&temperature=T&mix=M
                                          body: image bytes
                                          -> {image: PNG data URL, text, task, prompt, seconds}
    POST /api/compare?method=auto|answer|scores
                                          body: JSON {"a": image, "b": image, "ref": image or null},
                                          each image base64 or a data URL
                                          -> {preferred: "A"|"B", probability, method, scores, text, seconds}
    GET  /api/info                        -> {model, tasks}

A bad upload gets HTTP 400 with the reason, an oversized one 413; the server goes on.
"""
from __future__ import annotations

import base64
import html
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from ..cli import info
from .restore import restore_options

MB = 1 << 20


def add_arguments(parser) -> None:
    from .assess import add_model_arguments

    add_model_arguments(parser, json=False)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="largest accepted upload")


def run(args) -> int:
    from .assess import open_model

    model = open_model(args)
    server = make_server(model, args.host, args.port, int(args.max_upload_mb * MB),
                         name=args.model or "bundled uare-tiny")
    host, port = server.server_address[:2]
    info(f"uare serve: http://{host}:{port}/  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def make_server(model, host: str = "127.0.0.1", port: int = 0, max_upload: int = 25 * MB,
                name: str = "") -> ThreadingHTTPServer:
    """A server for `model` (anything with UARE's assess/restore); port 0 picks a free one."""
    from ..data.instructions import TASK_OF_TYPE
    from ..pipeline import TASKS

    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "uare"

        def log_message(self, fmt, *a):  # one line per request on stderr, like the CLI's text
            info(f"uare serve: {self.address_string()} {fmt % a}")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):
            path = urlparse(self.path).path
            if path == "/":
                self._send(200, PAGE.replace("{tasks}", _options(TASKS)).replace(
                    "{types}", ", ".join(TASK_OF_TYPE)).replace(
                    "{name}", html.escape(name)).encode(), "text/html; charset=utf-8")
            elif path == "/api/info":
                self._json(200, {"model": name, "tasks": list(TASKS)})
            else:
                self._json(404, {"error": f"{path}: not found"})

        def do_POST(self):
            url = urlparse(self.path)
            try:
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/compare":
                    images = self._json_images(("a", "b"), ("ref",))
                    self._json(200, self._locked(lambda: _compare(model, images, query)))
                    return
                image = self._upload()
                if url.path == "/api/assess":
                    self._json(200, self._locked(lambda: _assess(model, image)))
                elif url.path == "/api/restore":
                    self._json(200, self._locked(lambda: _restore(model, image, query)))
                else:
                    raise ApiError(404, f"{url.path}: not found")
            except ApiError as e:
                self._json(e.status, {"error": str(e)})

        def _body(self) -> bytes:
            size = int(self.headers.get("Content-Length") or 0)
            if size > max_upload:
                # the body is not read: close the connection rather than drain it
                self.close_connection = True
                raise ApiError(413, f"upload of {size / MB:.1f} MB is over the limit of {max_upload / MB:.0f} MB")
            return self.rfile.read(size)

        def _upload(self):
            return _decode_image(self._body(), self.headers.get("X-Filename") or "upload")

        def _json_images(self, required: tuple, optional: tuple) -> dict:
            """{key: PIL image or None} from a JSON body of base64 images or data URLs."""
            try:
                body = json.loads(self._body() or b"null")
            except ValueError as e:
                raise ApiError(400, f"the body is not JSON ({e})") from None
            if not isinstance(body, dict):
                raise ApiError(400, 'the body must be a JSON object {"a": image, "b": image, "ref": image}')
            missing = [k for k in required if not body.get(k)]
            if missing:
                raise ApiError(400, f"missing image {', '.join(map(repr, missing))}")
            out = {}
            for k in required + optional:
                v = body.get(k)
                if not v:
                    out[k] = None
                    continue
                try:
                    data = base64.b64decode(str(v).split(",", 1)[-1], validate=True)
                except ValueError:
                    raise ApiError(400, f"{k}: not base64 or a data URL") from None
                out[k] = _decode_image(data, k)
            return out

        @staticmethod
        def _locked(fn):
            with lock:
                try:
                    return fn()
                except ValueError as e:  # bad task, steps, sizes: the caller's to fix
                    raise ApiError(400, str(e)) from None

    return ThreadingHTTPServer((host, port), Handler)


def _decode_image(data: bytes, name: str):
    from ..imageio import ImageError, load_image_bytes

    try:
        return load_image_bytes(data, name)
    except ImageError as e:
        raise ApiError(400, str(e)) from None


def _compare(model, images: dict, query: dict) -> dict:
    t = time.perf_counter()
    c = model.compare(images["a"], images["b"], ref=images["ref"], method=query.get("method") or None)
    return {"preferred": c.preferred, "probability": round(float(c.probability), 4),
            "method": c.method, "scores": [round(float(v), 4) for v in c.scores] if c.scores else None,
            "text": c.text, "seconds": round(time.perf_counter() - t, 3)}


def _assess(model, image) -> dict:
    t = time.perf_counter()
    a = model.assess(image)
    return {"score": round(float(a.score), 4), "level": a.level, "text": a.text,
            "seconds": round(time.perf_counter() - t, 3)}


def _restore(model, image, query: dict) -> dict:
    task = query.get("task", "auto")
    analyze = query.get("analyze", "0").lower() in ("1", "true", "yes", "on")
    try:
        steps = int(query["steps"]) if query.get("steps") else None
    except ValueError:
        raise ValueError(f"steps must be a whole number, got {query['steps']!r}") from None
    options = restore_options(query.get("types"), query.get("color_fix", "auto"), query.get("strength"),
                              query.get("temperature"), query.get("mix"), query.get("refine", "auto"),
                              query.get("branch", "auto"), query.get("ensemble"))
    t = time.perf_counter()
    r = model.restore(image, task=task, analyze=analyze, steps=steps, **options)
    buf = io.BytesIO()
    r.image.save(buf, "PNG")
    return {"image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
            "text": r.text, "task": getattr(r, "task", task), "prompt": getattr(r, "prompt", ""),
            "mix": round(float(getattr(r, "mix", 1.0)), 4), "branch": getattr(r, "branch", None),
            "width": r.image.width, "height": r.image.height,
            "seconds": round(time.perf_counter() - t, 3)}


def _options(tasks) -> str:
    return "".join(f'<option value="{t}"{" selected" if t == "auto" else ""}>{t}</option>' for t in tasks)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>uare</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px}
.row{display:flex;gap:16px;flex-wrap:wrap}.col{flex:1;min-width:300px}
img{max-width:100%;border:1px solid #ccc;image-rendering:auto}
pre{white-space:pre-wrap;background:#f4f4f4;padding:8px}
.err{color:#b00}button{margin-right:8px}
</style></head><body>
<h2>uare: assess, compare and restore</h2>
<p>Model: {name}. Images stay on this machine.</p>
<p><input type="file" id="file" accept="image/*">
task <select id="task">{tasks}</select>
<label><input type="checkbox" id="analyze"> analyse, then restore</label>
<label>known defects <input id="types" size="18" placeholder="e.g. lowlight,noise"
 title="{types}"></label>
<label>colour fix <select id="fix"><option>auto</option><option>on</option><option>off</option></select></label>
<label>refiner <select id="refine" title="the model's refiner, if it has one: input detail the latent cannot hold"><option>auto</option><option>on</option><option>off</option></select></label>
<label>branch <select id="branch" title="the model's pixel branch for an image with one degradation alone (the tiny model's: JPEG, raindrops, noise), if it has one"><option>auto</option><option>on</option><option>off</option></select></label>
<label>ensemble <select id="ensemble" title="the output of a pixel branch or the refiner averaged over this many flips and rotations: n times that network's time, less of its error"><option value="">model</option><option>1</option><option>2</option><option>4</option><option>8</option></select></label>
<label>strength <input id="strength" size="4" placeholder="model"
 title="img2img strength in (0, 1]: lower keeps more of the input; empty: the model's setting"></label>
<label>temperature <input id="temperature" size="4" placeholder="model"
 title="starting noise scale in [0, 2]: lower invents less detail, 0 starts from the noise's mean; empty: the model's setting"></label>
<label>mix <input id="mix" size="4" placeholder="model"
 title="share of the model's change kept, in [0, 1]: 1 its output, lower moves back toward the input; empty: the model's setting"></label>
<button id="assess">Assess</button><button id="restore">Restore</button>
<span id="status"></span></p>
<p>Compare the input (A) with <input type="file" id="fileb" accept="image/*"
 title="empty: the last output"> (B; empty: the last output)
<button id="compare">Compare</button></p>
<div class="row"><div class="col"><h3>Input</h3><img id="in"></div>
<div class="col"><h3>Output</h3><img id="out"><p><a id="dl" download="restored.png"></a></p></div></div>
<pre id="text"></pre>
<script>
const $ = id => document.getElementById(id);
$("file").onchange = () => { const f = $("file").files[0]; if (f) $("in").src = URL.createObjectURL(f); };
const dataUrl = f => new Promise((ok, bad) => { const r = new FileReader();
  r.onload = () => ok(r.result); r.onerror = bad; r.readAsDataURL(f); });
async function post(url, body, headers) {
  $("status").textContent = "working..."; $("status").className = "";
  const r = await fetch(url, {method: "POST", body: body, headers: headers});
  const j = await r.json();
  if (!r.ok) { $("status").textContent = j.error; $("status").className = "err"; return null; }
  $("status").textContent = "done in " + j.seconds + " s";
  return j;
}
async function call(url) {
  const f = $("file").files[0];
  if (!f) { $("status").textContent = "choose an image first"; return null; }
  return post(url, f, {"X-Filename": f.name});
}
$("assess").onclick = async () => {
  const j = await call("/api/assess");
  if (j) $("text").textContent = "score " + j.score.toFixed(2) + " (" + j.level + ")\\n" + j.text;
};
$("restore").onclick = async () => {
  const q = "task=" + $("task").value + ($("analyze").checked ? "&analyze=1" : "") +
    "&types=" + encodeURIComponent($("types").value.replace(/\\s/g, "")) + "&color_fix=" + $("fix").value +
    "&refine=" + $("refine").value + "&branch=" + $("branch").value + "&ensemble=" + $("ensemble").value +
    "&strength=" + encodeURIComponent($("strength").value.trim()) +
    "&temperature=" + encodeURIComponent($("temperature").value.trim()) +
    "&mix=" + encodeURIComponent($("mix").value.trim());
  const j = await call("/api/restore?" + q);
  if (!j) return;
  $("out").src = j.image; $("dl").href = j.image; $("dl").textContent = "download (" + j.width + "x" + j.height + ")";
  $("text").textContent = "task " + j.task + (j.mix < 1 ? ", mix " + j.mix : "") +
    (j.branch ? ", by its " + j.branch + " branch" : "") + (j.text ? "\\n\\n" + j.text : "");
};
$("compare").onclick = async () => {
  const f = $("file").files[0], g = $("fileb").files[0];
  const b = g ? await dataUrl(g) : ($("out").src.startsWith("data:") ? $("out").src : null);
  if (!f || !b) { $("status").textContent = "choose the input and B (or restore first)"; $("status").className = "err"; return; }
  const j = await post("/api/compare", JSON.stringify({a: await dataUrl(f), b: b}), {"Content-Type": "application/json"});
  if (!j) return;
  $("text").textContent = "preferred " + j.preferred + (j.preferred == "A" ? " (the input)" : g ? " (B)" : " (the output)") +
    ", probability " + j.probability.toFixed(3) + " (" + j.method +
    (j.scores ? ": " + j.scores.map(v => v.toFixed(2)).join(" against ") : "") + ")\\n" + j.text;
};
</script></body></html>
"""
