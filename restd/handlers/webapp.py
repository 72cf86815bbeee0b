"""The web app: its shell at every app path, its hashed assets, and its client config.

The app is served from the API's own origin, so the HttpOnly session cookies
and the CSRF Origin check work as designed, and the websocket (chatd's port,
the same host) receives the same cookies. The shell carries a strict
Content-Security-Policy: scripts and styles only from this origin, nothing
inline, connections only to this origin and the chat socket.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import tornado.web
from pydantic import BaseModel

from core.settings import Settings
from core.web import BaseHandler
from restd.assets import AssetBundle
from restd.handlers.base import ApiHandler
from restd.openapi import Operation

IMMUTABLE = "public, max-age=31536000, immutable"
# The app's own paths (its router's ROUTES in web/main.js), each with at most one
# more segment: the shell is served there and nowhere else, so /metrics or a
# scanner's /wp-login.php stay a plain 404.
APP_SECTIONS = "login|signup|feed|connections|chat|profile|users|settings|membership|payments"
APP_PATHS = rf"/(?:(?:{APP_SECTIONS})(?:/[A-Za-z0-9_-]+)?/?)?"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class ClientConfig(BaseModel):
    chatUrl: str
    publicUrl: str


def chat_url(settings: Settings, request: tornado.httputil.HTTPServerRequest) -> str:
    """The websocket URL for a page loaded from ``request``'s host."""
    if settings.public_chat_url:
        return settings.public_chat_url
    scheme = "wss" if request.protocol == "https" else "ws"
    host = request.host_name
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.chatd_port}/ws"


def content_security_policy(chat: str) -> str:
    parts = urlsplit(chat)
    chat_origin = f"{parts.scheme}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: https:",
            f"connect-src 'self' {chat_origin}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
        ]
    )


class ClientConfigHandler(ApiHandler):
    operations = {
        "get": Operation(
            "Where the web app finds the chat socket, and its own public URL",
            "web",
            ClientConfig,
            auth=False,
        )
    }

    def get(self) -> None:
        s = self.ctx.settings
        self.write_model(ClientConfig(chatUrl=chat_url(s, self.request), publicUrl=s.web_url))


class ShellHandler(BaseHandler):
    """``index.html`` at every path of the app (its router reads the path).

    A path outside the API's and the app's gets restd's JSON 404."""

    def initialize(self, bundle: AssetBundle, settings: Settings) -> None:
        self.bundle = bundle
        self.settings_ = settings

    def get(self, *_args: Any) -> None:
        if not self.bundle.shell:
            raise tornado.web.HTTPError(404)
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        csp = content_security_policy(chat_url(self.settings_, self.request))
        self.set_header("Content-Security-Policy", csp)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(self.bundle.shell)


class AssetHandler(BaseHandler):
    """``/assets/<build>/<path>``: cached for a year; another build's URL is a 404."""

    def initialize(self, bundle: AssetBundle) -> None:
        self.bundle = bundle

    def get(self, build: str, name: str) -> None:
        asset = self.bundle.get(build, name)
        if asset is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", asset.content_type)
        self.set_header("Cache-Control", IMMUTABLE)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(asset.body)


def web_rules(bundle: AssetBundle, settings: Settings) -> list[Any]:
    """After the API's rules: the assets, and the shell at the app's paths."""
    return [
        (r"/assets/([0-9a-f]+)/([A-Za-z0-9_./-]+)", AssetHandler, {"bundle": bundle}),
        (APP_PATHS, ShellHandler, {"bundle": bundle, "settings": settings}),
    ]
