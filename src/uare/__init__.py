"""UARE: unified image quality assessment, restoration and enhancement.

The heavy pieces import lazily so that `import uare` stays cheap and `uare.metrics`
or `uare.degradations` work without loading the model code.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["UARE", "Assessment", "Comparison", "Restoration", "__version__"]


def __getattr__(name):
    if name in ("UARE", "Assessment", "Comparison", "Restoration"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'uare' has no attribute {name!r}")
