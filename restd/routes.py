"""restd's route table: path templates, handlers and path-parameter patterns.

The same table gives Tornado its URL rules and the OpenAPI document its paths.
Order matters where templates overlap: ``/api/users/me`` and
``/api/users/search`` come before ``/api/users/{user_id}``.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.context import RestContext
from domain.models import OBJECT_ID_PATTERN
from domain.payments.models import ORDER_ID_PATTERN
from restd.handlers.auth import (
    LoginHandler,
    LogoutAllHandler,
    LogoutHandler,
    MeHandler,
    RefreshHandler,
    SignupHandler,
)
from restd.handlers.connections import (
    ConnectionHandler,
    ConnectionsHandler,
    RequestHandler,
    RequestsHandler,
)
from restd.handlers.conversations import ConversationsHandler, MessagesHandler
from restd.handlers.docs import OpenApiHandler
from restd.handlers.email import UnsubscribeHandler
from restd.handlers.feed import FeedEventsHandler, FeedHandler
from restd.handlers.payments import (
    CreatePaymentHandler,
    PaymentHandler,
    PlansHandler,
    WebhookHandler,
)
from restd.handlers.users import BlockHandler, ProfileHandler, SearchHandler, UserHandler
from restd.handlers.webapp import ClientConfigHandler
from restd.openapi import Route, build_document

CONVERSATION_ID_PATTERN = r"^[0-9a-f]{24}-[0-9a-f]{24}$"
OPENAPI_PATH = "/api/openapi.json"

ROUTES: list[Route] = [
    Route("/api/auth/signup", SignupHandler),
    Route("/api/auth/login", LoginHandler),
    Route("/api/auth/refresh", RefreshHandler),
    Route("/api/auth/logout", LogoutHandler),
    Route("/api/auth/logout-all", LogoutAllHandler),
    Route("/api/auth/me", MeHandler),
    Route("/api/me", MeHandler),
    Route("/api/users/me", ProfileHandler),
    Route("/api/users/search", SearchHandler),
    Route("/api/users/{user_id}", UserHandler, {"user_id": OBJECT_ID_PATTERN}),
    Route("/api/users/{user_id}/block", BlockHandler, {"user_id": OBJECT_ID_PATTERN}),
    Route("/api/connection-requests", RequestsHandler),
    Route(
        "/api/connection-requests/{request_id}", RequestHandler, {"request_id": OBJECT_ID_PATTERN}
    ),
    Route("/api/connections", ConnectionsHandler),
    Route("/api/connections/{user_id}", ConnectionHandler, {"user_id": OBJECT_ID_PATTERN}),
    Route("/api/conversations", ConversationsHandler),
    Route("/api/feed", FeedHandler),
    Route("/api/feed/events", FeedEventsHandler),
    Route(
        "/api/conversations/{conversation_id}/messages",
        MessagesHandler,
        {"conversation_id": CONVERSATION_ID_PATTERN},
    ),
    Route("/api/email/unsubscribe", UnsubscribeHandler),
    Route("/api/client-config", ClientConfigHandler),
    Route("/api/payments/plans", PlansHandler),
    Route("/api/payments/create", CreatePaymentHandler),
    Route("/api/payments/webhook", WebhookHandler),
    Route("/api/payments/{order_id}", PaymentHandler, {"order_id": ORDER_ID_PATTERN}),
]


def openapi_document() -> dict[str, Any]:
    return build_document(ROUTES)


def url_rules(ctx: RestContext) -> list[Any]:
    document = orjson.dumps(openapi_document())
    rules: list[Any] = [
        (route.regex, route.handler, {"ctx": ctx, "route": route.template}) for route in ROUTES
    ]
    rules.append(
        (OPENAPI_PATH, OpenApiHandler, {"ctx": ctx, "route": OPENAPI_PATH, "document": document})
    )
    return rules
