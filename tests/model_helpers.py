"""Shared tiny configs and samples for the model tests (not a test module)."""
import torch

from uare.model import AutoencoderConfig, LLMConfig, ModelConfig, ViTConfig, build_model
from uare.sequence import Text, VaeImage, VitImage


def micro_config(flow_anchor: str = "velocity", view_scale: int = 1) -> ModelConfig:
    """Smaller than `tiny` so each test runs in milliseconds; same structure."""
    return ModelConfig(flow_anchor=flow_anchor,
        llm=LLMConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                      intermediate_size=128, vocab_size=300),
        vit=ViTConfig(patch_size=8, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                      max_patches_per_side=8, view_scale=view_scale),
        vae=AutoencoderConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, num_groups=4),
        max_latent_size=8, timestep_shift=4.0)


def micro_model(seed: int = 0, flow_anchor: str = "velocity", view_scale: int = 1):
    torch.manual_seed(seed)
    model = build_model(micro_config(flow_anchor, view_scale))
    with torch.no_grad():   # llm2vae starts at zero; give it weights so velocities are informative
        model.llm2vae.weight.normal_(std=0.1)
    return model.eval()


def edit_sample(seed: int, noisy_latent: torch.Tensor | None = None):
    """Bagel's edit plan: clean VAE + ViT of the source, instruction, answer text, noisy target."""
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(3, 16, 24, generator=g) * 2 - 1
    lat = torch.randn(16, 4, 6, generator=g)
    tgt = torch.randn(16, 4, 6, generator=g)
    tgt = noisy_latent if noisy_latent is not None else tgt
    ids = torch.randint(4, 64, (5,), generator=g).tolist()
    return [VaeImage(lat), VitImage(src), Text(ids[:3]), VaeImage(tgt, noisy=True), Text(ids[3:], loss=True)]
