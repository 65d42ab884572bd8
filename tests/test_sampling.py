"""Flow schedule, Euler loop, CFG combinations and text decoding, checked against direct
computations of the bagel-facts §3 formulas with fake velocity/logit functions."""
from __future__ import annotations

import pytest
import torch

from uare.sampling import (
    CfgBranch, GuidanceConfig, TextConfig, cfg_combine, euler_sample, flow_timesteps,
    generate_tokens, guided_velocity, level_probabilities, level_score, next_token, shift_timesteps,
)


def test_flow_timesteps_apply_the_shift_formula_to_a_linspace_from_1_to_0():
    s = 3.0
    ts = flow_timesteps(6, s)
    for t_raw, t in zip([1.0, 0.8, 0.6, 0.4, 0.2, 0.0], ts.tolist()):
        assert t == pytest.approx(s * t_raw / (1 + (s - 1) * t_raw))
    assert ts[0] == 1.0 and ts[-1] == 0.0


def test_shift_above_one_spends_more_steps_at_high_noise():
    plain, shifted = flow_timesteps(11, 1.0), flow_timesteps(11, 4.0)
    assert torch.allclose(plain, torch.linspace(1, 0, 11, dtype=torch.float64))
    assert (shifted[1:-1] > plain[1:-1]).all()
    assert (shifted[:-1] > shifted[1:]).all()


def test_a_later_start_scales_the_shifted_schedule_into_start_to_0():
    full, late = flow_timesteps(5, 4.0), flow_timesteps(5, 4.0, start=0.5)
    assert late[0].item() == 0.5 and late[-1].item() == 0.0
    assert torch.allclose(late, 0.5 * full)


def test_bad_schedule_arguments_raise_value_error():
    with pytest.raises(ValueError):
        flow_timesteps(1)
    for start in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="strength"):
            flow_timesteps(4, 1.0, start=start)
    with pytest.raises(ValueError):
        shift_timesteps(torch.tensor([0.5]), 0.0)


def test_euler_sample_takes_num_steps_minus_one_steps_of_x_minus_v_dt():
    ts = flow_timesteps(5, 2.0)
    seen = []

    def v(x, t):
        seen.append(t)
        return x * 0 + t  # v depends on t only

    x = euler_sample(v, torch.zeros(3), ts)
    expected = -sum(ts[i].item() * (ts[i] - ts[i + 1]).item() for i in range(4))
    assert seen == pytest.approx(ts[:-1].tolist())
    assert torch.allclose(x, torch.full((3,), expected))


def test_euler_sample_recovers_data_for_the_exact_rectified_flow_velocity():
    # x_t = (1-t) x0 + t eps has constant v = eps - x0: Euler is exact whatever the steps
    x0, eps = torch.randn(4, 8), torch.randn(4, 8)
    out = euler_sample(lambda x, t: eps - x0, eps.clone(), flow_timesteps(7, 3.0))
    assert torch.allclose(out, x0, atol=1e-5)


def _direct_bagel(v_c, v_t, v_i, s_txt, s_img, renorm, lo):
    """Bagel's formulas written out longhand (bagel-facts §3)."""
    if renorm == "text_channel":
        v_txt = v_t + s_txt * (v_c - v_t)
        scale = (v_c.norm(dim=-1, keepdim=True) / (v_txt.norm(dim=-1, keepdim=True) + 1e-8)).clamp(lo, 1)
        v_txt = v_txt * scale
        return v_i + s_img * (v_txt - v_i) if s_img > 1 else v_txt
    v_txt = v_t + s_txt * (v_c - v_t)
    v = v_i + s_img * (v_txt - v_i) if s_img > 1 else v_txt
    if renorm == "global":
        scale = (v_c.norm() / (v.norm() + 1e-8)).clamp(lo, 1)
    else:
        scale = (v_c.norm(dim=-1, keepdim=True) / (v.norm(dim=-1, keepdim=True) + 1e-8)).clamp(lo, 1)
    return v * scale


@pytest.mark.parametrize("renorm", ["global", "channel", "text_channel"])
@pytest.mark.parametrize("s_img", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("lo", [0.0, 0.5])
def test_cfg_combine_matches_the_direct_formulas(renorm, s_img, lo):
    g = torch.Generator().manual_seed(1)
    v_c, v_t, v_i = (torch.randn(16, 8, generator=g) for _ in range(3))
    cfg = GuidanceConfig(text_scale=4.0, img_scale=s_img, renorm_type=renorm, renorm_min=lo)
    uncond = [(b, {"text": v_t, "image": v_i}[b.name]) for b in cfg.branches(0.7)]
    got = cfg_combine(v_c, uncond, renorm, lo)
    assert torch.allclose(got, _direct_bagel(v_c, v_t, v_i, 4.0, s_img, renorm, lo), atol=1e-6)


def test_renorm_never_grows_the_velocity_beyond_the_conditional_norm():
    g = torch.Generator().manual_seed(2)
    v_c, v_t, v_i = (torch.randn(32, 4, generator=g) for _ in range(3))
    b = [(CfgBranch("text", 6.0), v_t), (CfgBranch("image", 2.0), v_i)]
    assert cfg_combine(v_c, b, "global").norm() <= v_c.norm() * (1 + 1e-6)
    per_tok = cfg_combine(v_c, b, "channel").norm(dim=-1)
    assert (per_tok <= v_c.norm(dim=-1) * (1 + 1e-6)).all()
    # renorm_min = 1 disables the shrinking: plain chained guidance
    plain = v_i + 2.0 * (v_t + 6.0 * (v_c - v_t) - v_i)
    assert torch.allclose(cfg_combine(v_c, b, "global", 1.0), plain, atol=1e-5)


def test_global_renorm_is_per_sample_in_a_batch():
    g = torch.Generator().manual_seed(3)
    v_c, v_t = torch.randn(2, 16, 8, generator=g), torch.randn(2, 16, 8, generator=g)
    batched = cfg_combine(v_c, [(CfgBranch("text", 4.0), v_t)], "global")
    for k in range(2):
        one = cfg_combine(v_c[k], [(CfgBranch("text", 4.0), v_t[k])], "global")
        assert torch.allclose(batched[k], one, atol=1e-6)


def test_guidance_is_off_when_text_scale_is_at_most_one_even_with_image_scale():
    assert GuidanceConfig(text_scale=1.0, img_scale=3.0).branches(0.5) == []
    assert [b.name for b in GuidanceConfig(4.0, 1.0).branches(0.5)] == ["text"]
    assert [b.name for b in GuidanceConfig(4.0, 1.5).branches(0.5)] == ["text", "image"]


def test_guidance_interval_is_open_below_and_closed_above():
    cfg = GuidanceConfig(4.0, 1.5, interval=(0.4, 1.0))
    assert cfg.branches(1.0) and cfg.branches(0.41)
    assert cfg.branches(0.4) == [] and cfg.branches(0.1) == []


def test_guided_velocity_calls_only_the_needed_contexts():
    calls = []

    def velocity(name, x, t):
        calls.append((name, t))
        return x + {"full": 1.0, "text": 2.0, "image": 3.0}[name]

    fn = guided_velocity(velocity, GuidanceConfig(4.0, 1.5, interval=(0.4, 1.0), renorm_type="none"))
    x = torch.zeros(2, 3)
    out_in = fn(x, 0.9)
    out_out = fn(x, 0.2)
    assert [c[0] for c in calls] == ["full", "text", "image", "full"]
    # v_txt = 2 + 4(1-2) = -2 ; v = 3 + 1.5(-2-3) = -4.5
    assert torch.allclose(out_in, torch.full((2, 3), -4.5))
    assert torch.allclose(out_out, torch.ones(2, 3))


def test_bad_guidance_settings_raise_value_error():
    with pytest.raises(ValueError):
        GuidanceConfig(renorm_type="local")
    with pytest.raises(ValueError):
        GuidanceConfig(interval=(0.8, 0.2))
    with pytest.raises(ValueError):
        cfg_combine(torch.zeros(2, 2), [], "bogus")


def _fake_lm(script):
    """decode_step that returns logits peaking at the next scripted token."""
    fed = []

    def step(tok):
        fed.append(tok)
        logits = torch.full((10,), -5.0)
        logits[script[min(len(fed), len(script) - 1)]] = 5.0
        return logits

    first = torch.full((10,), -5.0)
    first[script[0]] = 5.0
    return step, first, fed


def test_greedy_generation_stops_at_the_end_token_and_feeds_it_to_the_cache():
    step, first, fed = _fake_lm([3, 4, 5, 9, 1])
    out = generate_tokens(step, first, end_id=9)
    assert out == [3, 4, 5]
    assert fed == [3, 4, 5, 9]


def test_generation_can_stop_early_leaving_the_segment_open():
    step, first, fed = _fake_lm([3, 4, 5, 9, 1])
    assert generate_tokens(step, first, end_id=9, stop=lambda toks: toks[-1] == 4) == [3, 4]
    assert fed == [3, 4]                       # every token is in the cache, no end token


def test_generation_respects_max_new_tokens():
    step, first, fed = _fake_lm([2, 2, 2, 2, 2, 2])
    assert generate_tokens(step, first, end_id=9, cfg=TextConfig(max_new_tokens=3)) == [2, 2, 2]


def test_sampled_decoding_is_reproducible_with_a_seeded_generator_and_honours_top_k():
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0, 0.5])
    cfg = TextConfig(temperature=1.0, top_k=2)
    a = [next_token(logits, cfg, torch.Generator().manual_seed(7)) for _ in range(5)]
    b = [next_token(logits, cfg, torch.Generator().manual_seed(7)) for _ in range(5)]
    assert a == b
    g = torch.Generator().manual_seed(0)
    draws = {next_token(logits, cfg, g) for _ in range(200)}
    assert draws == {2, 3}


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    g = torch.Generator().manual_seed(0)
    draws = {next_token(logits, TextConfig(temperature=1.0, top_p=0.7), g) for _ in range(300)}
    assert draws == {0, 1}


def test_level_score_is_the_probability_weighted_mean_of_one_to_five():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(4))
    ids = [11, 3, 42, 7, 20]
    p = torch.softmax(logits[ids], 0)
    assert level_probabilities(logits, ids).sum().item() == pytest.approx(1.0)
    assert level_score(logits, ids) == pytest.approx(float(sum(p[k] * (k + 1) for k in range(5))), abs=1e-6)
    peaked = torch.zeros(50)
    peaked[20] = 30.0
    assert level_score(peaked, ids) == pytest.approx(5.0, abs=1e-6)


def test_level_score_is_continuous_in_the_logits():
    ids = [0, 1, 2, 3, 4]
    base = torch.zeros(5)
    scores = []
    for d in torch.linspace(0, 1, 5):
        lg = base.clone()
        lg[4] = d
        scores.append(level_score(lg, ids))
    assert all(b > a for a, b in zip(scores, scores[1:]))
    assert scores[0] == pytest.approx(3.0)
    assert max(b - a for a, b in zip(scores, scores[1:])) < 0.2  # small logit change, small score change

