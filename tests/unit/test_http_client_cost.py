"""The provider client's per-call cost: httpcore asks ``import sniffio`` several times per
request, and without the package every ask is a failed import that searches sys.path
(a fifth of a call's CPU by ``python -m bench.profile``). Installed, it is a dict lookup."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from activities import make_http_client


class CountingFinder(importlib.abc.MetaPathFinder):
    """Counts the searches for modules that ``sys.modules`` did not already answer."""

    def __init__(self) -> None:
        self.searched: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        self.searched.append(fullname)


async def test_a_provider_call_searches_for_no_module(monkeypatch: pytest.MonkeyPatch) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/car/reservations", ok)
    async with TestServer(app) as server, make_http_client(str(server.make_url(""))) as http:
        await http.post("/car/reservations", json={})  # the first call may import what it needs
        finder = CountingFinder()
        monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
        for _ in range(3):
            assert (await http.post("/car/reservations", json={})).status_code == 200
    assert finder.searched == []
