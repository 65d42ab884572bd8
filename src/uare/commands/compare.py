"""`uare compare IMAGE_A IMAGE_B [--ref REF] [--method M] [--json]`: which is better, how sure, and why."""
from __future__ import annotations

from ..cli import emit_json, info
from ..pipeline import COMPARE_METHODS
from .assess import add_model_arguments, open_model


def add_arguments(parser) -> None:
    parser.add_argument("image_a", metavar="IMAGE_A")
    parser.add_argument("image_b", metavar="IMAGE_B")
    parser.add_argument("--ref", metavar="REF", default=None,
                        help="reference image: judge fidelity to it as well as perceptual quality")
    parser.add_argument("--method", choices=COMPARE_METHODS, default=None,
                        help="answer: the model's written verdict, read with A and B in both orders; "
                             "scores: each image assessed alone, the higher score wins (no reference); "
                             "auto: scores without --ref, the answer with it; default: the model's setting")
    add_model_arguments(parser)


def run(args) -> int:
    from ..imageio import load_image

    try:  # read every input first, so a bad file fails before the model loads
        images = [load_image(p) for p in (args.image_a, args.image_b)]
        ref = load_image(args.ref) if args.ref else None
    except (ValueError, OSError) as e:
        info(f"failed: {e}")
        if args.json:
            emit_json({"a": args.image_a, "b": args.image_b, "ref": args.ref, "error": str(e)})
        return 1
    model = open_model(args)
    c = model.compare(images[0], images[1], ref=ref, method=args.method)
    if args.json:
        emit_json({"a": args.image_a, "b": args.image_b, "ref": args.ref, "preferred": c.preferred,
                   "probability": round(c.probability, 4), "method": c.method,
                   "scores": [round(s, 4) for s in c.scores] if c.scores else None, "text": c.text})
    else:
        winner = args.image_a if c.preferred == "A" else args.image_b
        print(f"preferred: {c.preferred} ({winner}), probability {c.probability:.3f}")
        print(c.text, flush=True)
    return 0
