"""KV-cache inference gives the training forward's numbers, and contexts fork cleanly."""
import pytest
import torch

from model_helpers import edit_sample, micro_model
from uare.sequence import Text, build_packed, latents_to_tokens


def test_decode_steps_match_training_logits():
    model = micro_model()
    prompt, answer = [5, 6, 7], [8, 9, 10]
    p = build_packed([[Text(prompt), Text(answer, loss=True)]], model.cfg, model.special_ids)
    want = model(p).logits                              # predictions of answer + <|im_end|>
    ctx = model.new_context()
    model.prefill_text(ctx, prompt)
    got = [model.decode_step(ctx, tok) for tok in [model.cfg.llm.bos_id, *answer]]
    torch.testing.assert_close(torch.stack(got), want, atol=1e-5, rtol=1e-5)
    assert ctx.rope == 5 + 4 and ctx.length == 9


def test_extend_text_gives_each_conversation_the_logits_decode_steps_give():
    model = micro_model()
    samples = [edit_sample(s) for s in (1, 2)]
    prompt, head = [5, 6, 7], [model.cfg.llm.bos_id, 8, 9]
    alone = []
    for s in samples:
        ctx = model.new_context()
        model.prefill_vit_image(ctx, s[1].pixels)
        model.prefill_text(ctx, prompt)
        alone.append([model.decode_step(ctx, t) for t in head][-1])
    batch = model.new_context()
    model.prefill_vit_image(batch, torch.stack([s[1].pixels for s in samples]))
    model.prefill_text(batch, prompt)
    got = model.extend_text(batch, head)
    torch.testing.assert_close(got, torch.stack(alone), atol=1e-5, rtol=1e-5)
    assert batch.rope == ctx.rope and batch.length == ctx.length


@pytest.mark.parametrize("anchor,view_scale", [("velocity", 1), ("condition", 1), ("condition", 2)])
def test_velocity_against_cache_matches_training_forward(anchor, view_scale):
    model = micro_model(flow_anchor=anchor, view_scale=view_scale)
    sample = edit_sample(7)
    clean, vit, instr, target, _ = sample
    p = build_packed([sample[:4]], model.cfg, model.special_ids)
    # the ViT block holds one token per stride x stride pixels of the 16 x 24 image
    assert len(p.vit_index) == (16 // model.cfg.vit.stride) * (24 // model.cfg.vit.stride)
    t = 0.7
    p.vae_timesteps = torch.where(p.vae_noisy, torch.tensor(t), torch.tensor(0.0))
    want = model(p).velocity
    ctx = model.new_context()
    model.prefill_vae_image(ctx, clean.latent)
    model.prefill_vit_image(ctx, vit.pixels)
    model.prefill_text(ctx, list(instr.ids))
    n = ctx.length
    got = model.velocity(ctx, latents_to_tokens(target.latent), t, grid=(2, 3),
                         anchor=latents_to_tokens(clean.latent))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert ctx.length == n                              # noisy tokens never enter the cache


def test_fork_leaves_the_parent_untouched():
    model = micro_model()
    ctx = model.new_context()
    model.prefill_text(ctx, [5, 6])
    child = ctx.fork()
    model.prefill_text(child, [7, 8, 9])
    assert (ctx.length, ctx.rope) == (4, 4) and (child.length, child.rope) == (9, 9)
    a = model.decode_step(ctx.fork(), 11)
    b = model.decode_step(ctx.fork(), 11)
    assert torch.equal(a, b)


def test_velocity_checks_the_grid():
    model = micro_model()
    with pytest.raises(ValueError, match="grid"):
        model.velocity(model.new_context(), torch.zeros(5, 64), 0.5, grid=(2, 3))


def test_anchored_velocity_needs_the_conditioning_tokens():
    model = micro_model(flow_anchor="condition")
    with pytest.raises(ValueError, match="anchor"):
        model.velocity(model.new_context(), torch.zeros(6, 64), 0.5, grid=(2, 3))


def test_a_batch_of_contexts_gives_each_conversations_own_numbers():
    """Tiles restored together must get exactly what each would get alone."""
    model = micro_model(flow_anchor="condition")
    samples = [edit_sample(s) for s in (1, 2, 3)]
    instr = list(samples[0][2].ids)                     # one instruction for every tile
    t = 0.6

    def prefill(ctx, clean, vit):
        model.prefill_vae_image(ctx, clean)
        model.prefill_vit_image(ctx, vit)
        model.prefill_text(ctx, instr)

    alone = []
    for clean, vit, _, target, _ in samples:
        ctx = model.new_context()
        prefill(ctx, clean.latent, vit.pixels)
        alone.append(model.velocity(ctx, latents_to_tokens(target.latent), t, grid=(2, 3),
                                    anchor=latents_to_tokens(clean.latent)))
    batch = model.new_context()
    clean = torch.stack([s[0].latent for s in samples])
    prefill(batch, clean, torch.stack([s[1].pixels for s in samples]))
    assert batch.batch == 3 and batch.length == ctx.length and batch.rope == ctx.rope
    target = latents_to_tokens(torch.stack([s[3].latent for s in samples]))
    together = model.velocity(batch, target, t, grid=(2, 3), anchor=latents_to_tokens(clean))
    torch.testing.assert_close(together, torch.stack(alone), atol=1e-5, rtol=1e-5)
    # a one-conversation context (a shared text-only prefix) serves any batch
    shared = model.new_context()
    model.prefill_text(shared, instr)
    v = model.velocity(shared, target, t, grid=(2, 3), anchor=latents_to_tokens(clean))
    one = model.velocity(shared, target[1], t, grid=(2, 3), anchor=latents_to_tokens(clean[1]))
    torch.testing.assert_close(v[1], one, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one conversation"):
        model.decode_step(batch, 5)
