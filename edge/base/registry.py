"""String name -> lazily imported implementation, for every axis with several implementations."""
from __future__ import annotations

import difflib
import importlib
from typing import Any

from edge.base.errors import UserError


class Registry:
    """Maps names to ``"module:attribute"`` targets and imports a target only when it is asked for.

    Lazy import keeps optional runtimes (TensorRT, picamera2, litert-torch) out of processes that never use
    them; an unknown name fails with the valid names and the closest match instead of falling back.
    """

    def __init__(self, kind: str, targets: dict[str, str]):
        self.kind = kind
        self._targets = dict(targets)

    def names(self) -> list[str]:
        return sorted(self._targets)

    def target(self, name: str) -> str:
        if name not in self._targets:
            raise UserError(unknown_name_message(self.kind, name, self.names()))
        return self._targets[name]

    def get(self, name: str) -> Any:
        module_name, _, attribute = self.target(name).partition(":")
        return getattr(importlib.import_module(module_name), attribute)


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid)}"
