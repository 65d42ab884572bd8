"""`uare train RECIPE [--set key=value ...]`; under `torchrun --nproc_per_node N` it shards."""
from __future__ import annotations

from ..cli import UsageError, info


def add_arguments(parser) -> None:
    parser.add_argument("recipe", help="a recipe file, or <scale>/<stage> under ./recipes "
                                       "(e.g. tiny/stage1-single)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set train.steps=100 (checked like the file)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many more steps (the run stays resumable)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop at the first step boundary after this long, checkpointed "
                             "(for time-boxed jobs; the run stays resumable)")
    parser.add_argument("--export", metavar="DIR", default=None,
                        help="also write the EMA weights as a model folder to DIR where the run "
                             "stops, finished or not")


def run(args) -> int:
    from ..train import RecipeError, load_recipe, make_trainer

    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeError as e:
        raise UsageError(str(e)) from e
    try:
        trainer = make_trainer(recipe)
    except ValueError as e:
        raise UsageError(str(e)) from e
    try:
        rows = trainer.train(max_steps=args.max_steps,
                             max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
                             export_to=args.export)
        if trainer.env.main and rows:
            tps = sum(r["tokens"] for r in rows) / max(1e-9, sum(r["tokens"] / r["tokens_per_s"] for r in rows))
            info(f"{recipe.name}: steps {rows[0]['step'] - 1}->{trainer.step}, "
                 f"last loss {rows[-1]['loss']:.4f}, {tps:.0f} tokens/s; "
                 f"checkpoints in {trainer.ckpt_dir}")
    finally:
        trainer.env.close()
    return 0
