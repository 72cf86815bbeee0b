"""The OpenAPI document endpoint."""

from __future__ import annotations

from domain.context import RestContext
from restd.handlers.base import ApiHandler


class OpenApiHandler(ApiHandler):
    """Serves the document built once by make_app; not itself part of the document."""

    def initialize(self, ctx: RestContext, route: str, document: bytes = b"{}") -> None:
        super().initialize(ctx, route)
        self.document = document

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(self.document)
