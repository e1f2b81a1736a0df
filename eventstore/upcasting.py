"""Upcasters: old event versions are read as the latest one; stored rows never change."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Upcaster = Callable[[Mapping[str, Any]], dict[str, Any]]


class UpcasterRegistry:
    def __init__(self) -> None:
        self._steps: dict[str, tuple[str, Upcaster]] = {}

    def register(self, from_type: str, to_type: str, upcaster: Upcaster) -> None:
        if from_type in self._steps:
            raise ValueError(f"an upcaster from {from_type} is already registered")
        self._steps[from_type] = (to_type, upcaster)

    def upcast(self, type_: str, data: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        """Follow the chain v1 -> v2 -> ... to the latest type."""
        seen = 0
        while type_ in self._steps:
            type_, step = self._steps[type_]
            data = step(data)
            seen += 1
            if seen > 100:
                raise RuntimeError(f"upcaster cycle at {type_}")
        return type_, data

    def latest(self, type_: str) -> str:
        while type_ in self._steps:
            type_ = self._steps[type_][0]
        return type_

    def stored_types(self, type_: str) -> list[str]:
        """Every stored type name that reads as `type_` (itself included)."""
        return sorted({t for t in (*self._steps, type_) if self.latest(t) == type_})
