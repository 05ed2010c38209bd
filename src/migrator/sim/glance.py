"""Placeholder module being written right now; replaced before this lands."""

from __future__ import annotations

from aiohttp import web

from migrator.sim.cloud import SimCloud


def add_routes(router: web.UrlDispatcher, cloud: SimCloud) -> None:
    return None
