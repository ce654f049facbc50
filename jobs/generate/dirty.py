"""Dirty rows injected by --dirty-rate (each an EXTRA row with exactly one defect)."""
from __future__ import annotations


class DirtyRows:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("--dirty-rate is not supported yet")
