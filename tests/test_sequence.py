"""Sequence builder: layout, experts, RoPE ids, the attention rule and loss positions."""
import torch

from uare.model import get_config
from uare.sequence import SpecialIds, Text, VaeImage, VitImage, build_packed, drop, latents_to_tokens, tokens_to_latents

SP = SpecialIds(bos=1, eos=2, vision_start=3, vision_end=4)


def tiny():
    cfg = get_config("tiny")
    cfg.vit.view_scale = 1     # the layouts below count 16 px patches
    return cfg


def four_block_sample():
    """text(2) | ViT 32x32 (4 patches) | clean VAE (16,4,4)->4 tokens | noisy VAE 4 tokens."""
    return [Text([10, 11]), VitImage(torch.zeros(3, 32, 32)), VaeImage(torch.zeros(16, 4, 4)),
            VaeImage(torch.zeros(16, 4, 4), noisy=True)]


def test_layout_wraps_text_and_images_and_routes_latents_to_gen():
    p = build_packed([four_block_sample()], tiny(), SP)
    # [bos 10 11 eos] [vs v v v v ve] [vs z z z z ve] [vs n n n n ve]
    assert p.input_ids[:4].tolist() == [1, 10, 11, 2]
    assert p.input_ids[[4, 9, 10, 15, 16, 21]].tolist() == [3, 4, 3, 4, 3, 4]
    gen = torch.zeros(22, dtype=torch.bool)
    gen[11:15] = True
    gen[17:21] = True
    assert torch.equal(p.gen_mask, gen)      # markers stay with the und expert
    assert p.vit_index.tolist() == [5, 6, 7, 8]
    assert p.vae_index.tolist() == [11, 12, 13, 14, 17, 18, 19, 20]
    assert p.mse_rows.tolist() == [4, 5, 6, 7]


def test_rope_ids_share_one_id_per_image_and_noisy_does_not_advance():
    items = four_block_sample() + [VitImage(torch.zeros(3, 16, 16)), Text([5])]
    p = build_packed([items], tiny(), SP)
    pos = p.position_ids.tolist()
    assert pos[:4] == [0, 1, 2, 3]
    assert set(pos[4:10]) == {4} and set(pos[10:16]) == {5}
    assert set(pos[16:22]) == {6}            # noisy block
    assert set(pos[22:25]) == {6}            # the following ViT copy shares the noisy block's id
    assert pos[25:] == [7, 8, 9]


def test_dropped_image_still_advances_rope_but_dropped_text_does_not():
    p = build_packed([[drop(VitImage(torch.zeros(3, 16, 16))), drop(Text([7, 7])), Text([9])]], tiny(), SP)
    assert p.position_ids.tolist() == [1, 2, 3]
    assert p.input_ids.tolist() == [1, 9, 2]


def test_mask_rules_token_by_token():
    p = build_packed([four_block_sample()], tiny(), SP)
    m = p.attention_mask()
    text, vit, clean, noisy = range(0, 4), range(4, 10), range(10, 16), range(16, 22)
    for q in range(22):
        for k in range(22):
            if q in text:
                want = k <= q                          # causal text
            elif q in vit:
                want = k in text or k in vit           # block bidirectional + earlier context
            elif q in clean:
                want = k in text or k in vit or k in clean
            else:
                want = k in text or k in vit or k in clean or k in noisy
            assert bool(m[q, k]) == want, (q, k)


def test_nothing_later_sees_a_noisy_block():
    items = four_block_sample() + [Text([8, 8])]
    m = build_packed([items], tiny(), SP).attention_mask()
    assert not m[22:, 16:22].any()
    assert m[22:, :16].all()


def test_two_samples_never_see_each_other():
    p = build_packed([[Text([5, 6])], [Text([7])]], tiny(), SP)
    m = p.attention_mask()
    assert not m[4:, :4].any() and not m[:4, 4:].any()
    assert p.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2]   # rope restarts per sample


def test_ce_labels_are_next_tokens_of_supervised_text_only():
    p = build_packed([[Text([5, 6]), Text([7, 8], loss=True)]], tiny(), SP)
    assert p.ce_index.tolist() == [4, 5, 6]
    assert p.ce_labels.tolist() == [7, 8, 2]                  # ..., last token predicts <|im_end|>


def test_loss_len_supervises_only_the_opening_of_a_text():
    p = build_packed([[Text([5, 6]), Text([7, 8, 9], loss=True, loss_len=2)]], tiny(), SP)
    assert p.ce_index.tolist() == [4, 5] and p.ce_labels.tolist() == [7, 8]


def test_latent_tokens_round_trip_and_order():
    lat = torch.randn(16, 6, 8)
    tok = latents_to_tokens(lat, 2)
    assert tok.shape == (12, 64)
    assert torch.equal(tokens_to_latents(tok, 3, 4, 2), lat)
    # token 0 holds pixel (0,0),(0,1),(1,0),(1,1) x 16 channels, channel fastest
    assert torch.equal(tok[0, :16], lat[:, 0, 0]) and torch.equal(tok[0, 16:32], lat[:, 0, 1])
    assert torch.equal(tok[0, 32:48], lat[:, 1, 0])


def test_bad_image_size_names_the_constraint():
    import pytest

    with pytest.raises(ValueError, match="multiple of the patch size"):
        build_packed([[VitImage(torch.zeros(3, 20, 16))]], tiny(), SP)
    with pytest.raises(ValueError, match="max_latent_size"):
        build_packed([[VaeImage(torch.zeros(16, 2, 200))]], tiny(), SP)


def test_attention_segments_are_the_diagonal_blocks_of_the_mask():
    p = build_packed([four_block_sample(), [Text([5, 6, 7])], four_block_sample()], tiny(), SP)
    m = p.attention_mask()
    segs = p.attention_segments()
    assert [(a, b) for a, b, _ in segs] == [(0, 22), (22, 27), (27, 49)]
    assert segs[1][2] == "causal"
    for a, b, sm in (segs[0], segs[2]):
        assert torch.equal(sm, m[a:b, a:b])
    assert torch.equal(m[22:27, 22:27], torch.ones(5, 5, dtype=torch.bool).tril())


def test_noisy_images_are_anchored_on_their_own_samples_latest_clean_latent():
    g = torch.Generator().manual_seed(0)
    a, b, other = (torch.randn(16, 4, 6, generator=g) for _ in range(3))
    tgt = torch.randn(16, 4, 6, generator=g)
    small = torch.randn(16, 2, 2, generator=g)
    s1 = [VaeImage(a), VaeImage(other), VaeImage(tgt, noisy=True)]    # latest clean: other
    s2 = [drop(VaeImage(b)), Text([5]), VaeImage(tgt, noisy=True)]    # dropped still anchors
    s3 = [VaeImage(small), VaeImage(tgt, noisy=True)]                 # other grid: no anchor
    p = build_packed([s1, s2, s3], tiny(), SP)
    noisy_images = [i for i in range(len(p.vae_grids)) if p.vae_noisy[p.vae_image_ids == i].all()]
    got = [p.vae_anchor[p.vae_image_ids == i] for i in noisy_images]
    torch.testing.assert_close(got[0], latents_to_tokens(other))
    torch.testing.assert_close(got[1], latents_to_tokens(b))
    assert not got[2].any()
    assert not p.vae_anchor[~p.vae_noisy].any()
