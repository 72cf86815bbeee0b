"""``/api/email/unsubscribe``: the one-click link in every mail (domain/unsubscribe.py)."""

from __future__ import annotations

import html

from domain import unsubscribe
from restd.handlers.base import ApiHandler
from restd.openapi import Operation

TAG = "email"

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 480px; margin: 40px auto;">
<h1 style="font-size: 20px;">{title}</h1>
<p>{text}</p>
{form}
</body></html>
"""


class UnsubscribeHandler(ApiHandler):
    # The signed token is the whole credential: no session cookie is read, and the
    # one-click POST comes from mail providers and our own confirmation page alike.
    reads_session_cookie = False
    operations = {
        "get": Operation(
            "Check an unsubscribe link (changes nothing; HTML for browsers)",
            TAG,
            unsubscribe.UnsubscribePreview,
            query=unsubscribe.UnsubscribeQuery,
            auth=False,
            errors=(400,),
        ),
        "post": Operation(
            "Unsubscribe with a signed link (RFC 8058 one-click); each link works once",
            TAG,
            unsubscribe.UnsubscribeResult,
            query=unsubscribe.UnsubscribeQuery,
            auth=False,
            errors=(400, 404, 409),
        ),
    }

    def max_body_bytes(self) -> int:
        # RFC 8058's body is "List-Unsubscribe=One-Click"; this route needs no more.
        return self.ctx.settings.auth_body_max_bytes

    def _check_csrf(self) -> None:
        """No cookie authenticates this endpoint, so there is no session to forge a request in."""

    def _wants_html(self) -> bool:
        return "text/html" in self.request.headers.get("Accept", "")

    def _page(self, title: str, text: str, form: str = "") -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(PAGE.format(title=html.escape(title), text=html.escape(text), form=form))

    async def get(self) -> None:
        query = self.parse_query(unsubscribe.UnsubscribeQuery)
        preview = await unsubscribe.preview(self.ctx, query.token)
        if not self._wants_html():
            self.write_model(preview)
            return
        if preview.used:
            self._page("Already unsubscribed", "This link has already been used.")
            return
        action = html.escape(self.request.uri or "", quote=True)
        form = (
            f'<form method="post" action="{action}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        self._page(
            "Unsubscribe",
            f"Stop emails about {preview.kind} from DevConnect? "
            "You can turn them back on in your settings.",
            form,
        )

    async def post(self) -> None:
        # The body (RFC 8058's "List-Unsubscribe=One-Click") carries nothing we need.
        query = self.parse_query(unsubscribe.UnsubscribeQuery)
        result = await unsubscribe.unsubscribe(self.ctx, query.token)
        if self._wants_html():
            self._page(
                "Unsubscribed",
                f"You will get no more emails about {result.kind}. "
                "You can turn them back on in your settings.",
            )
            return
        self.write_model(result)
