"""scripts/tune_vit_iqa.py: the score it trains is the one assess reports, and the folder it
writes is the source model with only the ViT (and assess's view phase) changed."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from script_helpers import ROOT, load_script

from uare import UARE
from uare.pipeline import ASSESS_QUESTION, SCORE_PREFIX

DEFAULT_MODEL_DIR = ROOT / "weights" / "uare-tiny"


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/tune_vit_iqa.py")


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return UARE.from_pretrained(device="cpu")


def test_the_reading_it_trains_is_the_one_assess_pools(script, pipe, astronaut):
    views = pipe._iqa_views(Image.fromarray(astronaut[:256, 100:356]))
    with torch.inference_mode():
        want = torch.stack(pipe._read_views(views, pipe.tok.encode(ASSESS_QUESTION), SCORE_PREFIX, pipe.level_seqs))
    reader = script.Reader(pipe)
    one = astronaut[:128, :128]      # one view's worth: assess reads it alone
    with torch.no_grad():
        got = reader.logp(torch.stack(views))
        score = reader.score(torch.from_numpy(one / 255.0).permute(2, 0, 1).float()[None])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert float(score) == pytest.approx(pipe.assess(Image.fromarray(one)).score, abs=1e-4)


def test_the_gradient_reaches_the_vit_only(script, pipe, astronaut):
    reader = script.Reader(pipe)
    m = pipe.model
    m.requires_grad_(False)
    m.vit.requires_grad_(True)
    try:
        x = torch.from_numpy(astronaut[:128, :128] / 255.0).permute(2, 0, 1).float()[None]
        reader.score(x).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.vit.parameters())
        assert all(p.grad is None for n, p in m.named_parameters() if not n.startswith("vit."))
    finally:
        m.vit.requires_grad_(False)
        m.zero_grad(set_to_none=True)


def _photos(tmp_path, astronaut):
    data = tmp_path / "photos" / "set"
    data.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(astronaut[100 * i:100 * i + 160, 60 * i:60 * i + 170]).save(data / f"p{i}.png")
    return tmp_path / "photos"


def test_a_short_run_writes_the_source_model_with_a_new_vit(script, tmp_path, astronaut):
    _photos(tmp_path, astronaut)
    out = tmp_path / "vitq"
    assert script.main(["--model", str(DEFAULT_MODEL_DIR), "-o", str(out), "--data", str(tmp_path / "photos"),
                        "--steps", "2", "--sweeps", "1", "--distill", "2", "--holdout", "1",
                        "--threads", "1", "--lr", "1e-3", "--phase", "4"]) == 0
    src, new = load_file(str(DEFAULT_MODEL_DIR / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert src.keys() == new.keys()
    changed = {k for k in src if not torch.equal(src[k], new[k])}
    assert changed and all(k.startswith("vit.") for k in changed)
    for f in DEFAULT_MODEL_DIR.iterdir():
        if f.name not in ("model.safetensors", "inference.json"):
            assert (out / f.name).read_bytes() == f.read_bytes(), f.name
    # assess's views at the phase the ViT was trained at; every other setting as it was
    settings = json.loads((DEFAULT_MODEL_DIR / "inference.json").read_text())
    assert json.loads((out / "inference.json").read_text()) == {**settings, "iqa_view_phase": 4}
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and records[-1]["final"] and records[-1]["step"] == 2
    assert set(records[-1]["heldout"]) == {"noise", "blur", "jpeg"}
    UARE.from_pretrained(out).assess(Image.fromarray(astronaut[:128, :128]))


def test_und_trains_the_reader_and_never_the_generation_side_or_the_words(script, pipe):
    names = set(script.trained_parameters(pipe.model, "und"))
    assert names >= set(script.trained_parameters(pipe.model, "vit"))
    assert any(".experts.und." in n for n in names) and any(n.startswith("connector.") for n in names)
    assert "llm.norm.und.weight" in names
    assert not any(".experts.gen." in n or n.startswith(("llm.lm_head", "llm.embed_tokens", "llm.norm.gen",
                                                          "autoencoder.", "llm2vae", "vae2llm")) for n in names)


def test_keep_reads_restore_contexts_and_holds_them_to_the_start_model(script, pipe, astronaut):
    import copy
    import random

    teacher = copy.deepcopy(pipe.model)
    student = copy.deepcopy(pipe.model)
    keeper = script.Keeper(pipe, teacher)
    rng = random.Random(3)
    photos = [Image.fromarray(astronaut[:200, :200])]
    drawn = [keeper.draw(photos, rng) for _ in range(8)]
    guided = [d for d in drawn if d["answer"]]
    assert guided and len(guided) < len(drawn)
    drawn = [guided[0], next(d for d in drawn if not d["answer"])]
    d = drawn[0]
    # the velocity it reads is the one restore's sampler asks for in the same context
    ctx = pipe.model.new_context()
    pipe.model.prefill_vae_image(ctx, d["latent"])
    pipe.model.prefill_vit_image(ctx, d["tile"] * 2 - 1)
    pipe.model.prefill_text(ctx, d["instr"])
    if d["answer"]:
        pipe.model.prefill_text(ctx, d["answer"])
    want = pipe.model.velocity(ctx, d["x_t"], d["t"], d["grid"], anchor=d["anchor"])
    with torch.no_grad():
        _, got = keeper.read(student, d)
    torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        vel, kl = keeper.loss(student, drawn)
    assert float(vel) < 1e-10 and abs(float(kl)) < 1e-6
    student.requires_grad_(False)
    und = script.trained_parameters(student, "und")
    for t in und.values():
        t.requires_grad_(True)
    with torch.no_grad():
        student.llm.layers[0].experts["und"].v_proj.weight.mul_(1.5)
    vel, kl = keeper.loss(student, drawn)
    assert float(vel.detach()) > 1e-6 and float(kl.detach()) > 1e-6
    (vel + kl).backward()
    assert student.llm.layers[3].experts["und"].k_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in student.named_parameters() if n not in und)


def test_a_short_und_run_changes_the_reader_and_leaves_the_generation_side(script, tmp_path, astronaut):
    out = tmp_path / "undq"
    assert script.main(["--model", str(DEFAULT_MODEL_DIR), "-o", str(out), "--data", str(_photos(tmp_path, astronaut)),
                        "--train", "und", "--steps", "1", "--sweeps", "1", "--distill", "1", "--keep", "1",
                        "--holdout", "1", "--threads", "1", "--lr", "1e-3", "--lr-und", "1e-3"]) == 0
    src, new = load_file(str(DEFAULT_MODEL_DIR / "model.safetensors")), load_file(str(out / "model.safetensors"))
    changed = {k for k in src if not torch.equal(src[k], new[k])}
    assert any(".experts.und." in k for k in changed) and any(k.startswith("vit.") for k in changed)
    assert all(k.startswith(("vit.", "connector.", "llm.norm.und.")) or ".experts.und." in k for k in changed)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["final"] and records[-1]["step"] == 1
    assert json.loads((out / "inference.json").read_text()) == json.loads((DEFAULT_MODEL_DIR / "inference.json").read_text())
