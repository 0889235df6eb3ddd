"""Shared by the unit tests of the web app: a stand-in for Temporal, and the
password of the one operator their apps are given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from web.portal import TemporalUnavailable

PASSWORD = "correct horse battery staple"


class RecordingPortal:
    """Stands in for ``TemporalPortal``: records each call, and Temporal is down."""

    def __init__(self) -> None:
        self.calls: list[Callable[[Any], Awaitable[Any]]] = []

    def call(self, fn: Callable[[Any], Awaitable[Any]], *, timeout: float | None = None) -> Any:
        self.calls.append(fn)
        raise TemporalUnavailable("no Temporal in these tests")

    @property
    def actions(self) -> list[str]:
        """Every call but the nav bar's count badge (harmless, and on every operator page)."""
        return [fn.__qualname__ for fn in self.calls if not fn.__qualname__.startswith("attention_count")]

    def close(self) -> None:
        pass
