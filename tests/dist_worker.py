"""Run the micro recipe under torchrun (or alone) and write the per-step metrics as JSON.

usage: python -m torch.distributed.run --nproc_per_node N tests/dist_worker.py MANIFESTS OUT STEPS
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import fake_degrade, micro_config, recipe_for  # noqa: E402


def main() -> None:
    from uare.model import build_model
    from uare.train import make_trainer

    manifests, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    model = build_model(micro_config())
    r = recipe_for(out, manifests, 2, [f"train.steps={steps}", "data.samples_per_step=2"])
    t = make_trainer(r, model=model, degrade_fn=fake_degrade, progress=False)
    rows = t.train()
    msd, _, _ = t._full_states()
    if t.env.main:
        weights = {k: v.double().norm().item() for k, v in msd.items()}
        (out / "result.json").write_text(json.dumps({"rows": rows, "world": t.env.world, "norms": weights}))
    t.env.close()


if __name__ == "__main__":
    main()
