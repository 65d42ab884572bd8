"""Evaluation harness: the paper's tables, peers side by side, plots and a gallery.

    from uare.eval import EvalConfig, evaluate_sr
    result = evaluate_sr("LR/", "HR/", EvalConfig(out="runs/eval", methods=["bicubic", "realesrgan"]))
    result.table   # one summary row per method; result.files: tables, plots, gallery

Methods are plug-ins (`uare.eval.methods`): `create_method("uare:model=DIR:steps=8:analyze")`,
`list_methods()`, `register_method(name)` for your own.
"""
from .iqa_tasks import correlations, evaluate_iqa, evaluate_monotonic
from .methods import (Method, MethodError, MethodSpec, MethodUnavailable, create_method,
                      list_methods, parse_spec, register_method)
from .tasks import EvalConfig, EvalResult, Item, evaluate_restore, evaluate_sr

__all__ = [
    "EvalConfig", "EvalResult", "Item", "Method", "MethodError", "MethodSpec", "MethodUnavailable",
    "correlations", "create_method", "evaluate_iqa", "evaluate_monotonic", "evaluate_restore",
    "evaluate_sr", "list_methods", "parse_spec", "register_method",
]
