"""Run the micro recipe under torchrun (or alone) and write the per-step metrics as JSON.

usage: python -m torch.distributed.run --nproc_per_node N tests/dist_worker.py MANIFESTS OUT STEPS [STOP]
With STOP, the run stops after STOP steps and a fresh model and trainer resume it from
its checkpoint, as a killed and restarted job would.
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
    stop = int(sys.argv[4]) if len(sys.argv) > 4 else None
    r = recipe_for(out, manifests, 2, [f"train.steps={steps}", "data.samples_per_step=2"])
    torch.manual_seed(0)
    t = make_trainer(r, model=build_model(micro_config()), degrade_fn=fake_degrade, progress=False)
    rows = t.train(max_steps=stop)
    if stop is not None:
        torch.manual_seed(123)  # the restarted job's fresh weights must not matter
        t = make_trainer(r, model=build_model(micro_config()), env=t.env, degrade_fn=fake_degrade,
                         progress=False)
        rows += t.train()
    msd, _, _ = t._full_states()
    if t.env.main:
        weights = {k: v.double().norm().item() for k, v in msd.items()}
        (out / "result.json").write_text(json.dumps({"rows": rows, "world": t.env.world, "norms": weights}))
    t.env.close()


if __name__ == "__main__":
    main()
