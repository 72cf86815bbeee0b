"""Connection request and connection endpoints."""

from __future__ import annotations

from domain import connections, models
from restd.handlers.base import ApiHandler
from restd.openapi import Link, Operation

TAG = "connections"


class RequestsHandler(ApiHandler):
    operations = {
        "get": Operation(
            "My incoming or outgoing requests",
            TAG,
            models.ConnectionRequestPage,
            query=models.ConnectionRequestQuery,
        ),
        "post": Operation(
            "Ask a user to connect (accepts theirs if they asked first)",
            TAG,
            models.ConnectionRequestView,
            status=201,
            body=models.ConnectionRequestBody,
            errors=(403, 404, 409),
            links=(
                Link(
                    "AnswerRequest",
                    "patch",
                    "/api/connection-requests/{request_id}",
                    {"request_id": "$response.body#/id"},
                    description="Accept or reject it (its recipient only)",
                ),
                Link(
                    "WithdrawRequest",
                    "delete",
                    "/api/connection-requests/{request_id}",
                    {"request_id": "$response.body#/id"},
                    description="Withdraw it (its sender only)",
                ),
            ),
        ),
    }

    async def get(self) -> None:
        me = await self.require_user()
        query = self.parse_query(models.ConnectionRequestQuery)
        self.write_model(await connections.list_requests(self.ctx, me, query))

    async def post(self) -> None:
        me = await self.require_user()
        body = self.parse_body(models.ConnectionRequestBody)
        self.write_model(await connections.create_request(self.ctx, me, body), status=201)


class RequestHandler(ApiHandler):
    operations = {
        "patch": Operation(
            "Accept or reject a request (its recipient only)",
            TAG,
            models.ConnectionRequestView,
            body=models.ConnectionRequestAnswer,
            errors=(403, 409),
        ),
        "delete": Operation(
            "Withdraw a request (its sender only)",
            TAG,
            models.ConnectionRequestView,
            errors=(403, 409),
        ),
    }

    async def patch(self, request_id: str) -> None:
        me = await self.require_user()
        answer = self.parse_body(models.ConnectionRequestAnswer)
        self.write_model(await connections.answer_request(self.ctx, me, request_id, answer))

    async def delete(self, request_id: str) -> None:
        me = await self.require_user()
        self.write_model(await connections.withdraw_request(self.ctx, me, request_id))


class ConnectionsHandler(ApiHandler):
    operations = {"get": Operation("My connections", TAG, models.ConnectionList)}

    async def get(self) -> None:
        me = await self.require_user()
        self.write_model(await connections.list_connections(self.ctx, me))


class ConnectionHandler(ApiHandler):
    operations = {"delete": Operation("Remove a connection", TAG, None, status=204, errors=(403,))}

    async def delete(self, user_id: str) -> None:
        me = await self.require_user()
        await connections.remove_connection(self.ctx, me, user_id)
        self.no_content()
