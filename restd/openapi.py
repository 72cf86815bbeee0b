"""The OpenAPI 3.1 document, generated from the route table and the wire models.

Each handler declares its ``operations`` (one ``Operation`` per HTTP method)
next to its code; this module turns the route table into the document served
at ``/api/openapi.json``. Pydantic's JSON Schema (2020-12) is the schema
dialect of OpenAPI 3.1, so models go into ``components.schemas`` unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from domain.models import ErrorBody

_PARAM_RE = re.compile(r"\{([a-z_]+)\}")
REF_TEMPLATE = "#/components/schemas/{model}"

ERROR_TEXT = {
    400: "Malformed request (for example, a body that is not JSON)",
    401: "Missing, expired or revoked credentials",
    403: "Refused (cross-site request, or an action only the other party may take)",
    404: "Not found, or not visible to the caller",
    409: "Conflicts with the current state",
    413: "The body is over this route's limit (details.maxBytes); refused before it is read",
    422: "Validation failed; details lists the failing fields",
    429: "Rate limited; see Retry-After",
    502: "The upstream provider refused or failed the call; try again",
    503: "Temporarily unavailable (for example, every password-hashing slot busy); see Retry-After",
}
# Methods whose requests may carry a body: each is bounded, so each may answer 413.
BODY_METHODS = frozenset({"post", "put", "patch"})
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


# Security schemes other than the caller's own credentials (bearer or access cookie).
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "access_token"},
    # The HttpOnly refresh cookie (settings.refresh_cookie_name), path /api/auth.
    "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "refresh_token"},
    # PhonePe's webhook credential: not a scheme of RFC 7235, the bare hex digest.
    "phonepeWebhookAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "Lowercase hex SHA-256 of `username:password`, the webhook "
        "credentials set on the PhonePe dashboard (no scheme prefix)",
    },
}


def operation_id(method: str, template: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{method}{template}").strip("_")


@dataclass(frozen=True)
class Link:
    """An OpenAPI link from an operation's success response to another operation.

    ``parameters`` and ``body`` map names to runtime expressions such as
    ``$response.body#/id``; schemathesis' stateful mode follows them.
    """

    name: str
    method: str
    template: str
    parameters: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] | None = None
    description: str = ""

    def as_openapi(self) -> dict[str, Any]:
        link: dict[str, Any] = {"operationId": operation_id(self.method, self.template)}
        if self.parameters:
            link["parameters"] = dict(self.parameters)
        if self.body is not None:
            link["requestBody"] = dict(self.body)
        if self.description:
            link["description"] = self.description
        return link


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    response: type[BaseModel] | None = None  # None: 204 No Content
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: bool = True
    errors: tuple[int, ...] = ()
    links: tuple[Link, ...] = ()
    # What an error code means for this operation, where ERROR_TEXT's general text does not fit.
    error_text: dict[int, str] = field(default_factory=dict)
    # Codes whose Retry-After this operation sends only sometimes (never a required header).
    retry_after_optional: tuple[int, ...] = ()
    # Schemes for an operation without the caller's credentials (auth=False).
    security: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """A path template like ``/api/users/{user_id}``; ``params`` gives each parameter's pattern."""

    template: str
    handler: type[Any]
    params: dict[str, str] = field(default_factory=dict)

    @property
    def regex(self) -> str:
        return _PARAM_RE.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", self.template)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        # A query string has no null: an optional parameter is simply left out.
        variants = [v for v in prop.pop("anyOf", []) if v.get("type") != "null"]
        if variants:
            prop.update(variants[0])
        prop.pop("title", None)
        params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def _json(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


def build_document(routes: Sequence[Route], title: str = "DevConnect restd") -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for route in routes:
        for op in getattr(route.handler, "operations", {}).values():
            if op.body:
                wanted.append((op.body, "validation"))
            if op.response:
                wanted.append((op.response, "serialization"))
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF_TEMPLATE)
    error_ref = refs[(ErrorBody, "serialization")]

    paths: dict[str, Any] = {}
    for route in routes:
        ops: dict[str, Operation] = getattr(route.handler, "operations", {})
        if not ops:
            continue
        path_params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": route.params.get(name, "^[^/]+$")},
            }
            for name in _PARAM_RE.findall(route.template)
        ]
        paths[route.template] = {
            method: _operation(route, method, op, path_params, refs, error_ref)
            for method, op in ops.items()
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        # Relative: the API is served wherever this document is (behind any ingress).
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _operation(
    route: Route,
    method: str,
    op: Operation,
    path_params: list[dict[str, Any]],
    refs: Mapping[Any, Any],
    error_ref: Any,
) -> dict[str, Any]:
    """One operation of the document: parameters, body, responses, security."""
    operation: dict[str, Any] = {
        "operationId": operation_id(method, route.template),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": path_params + (_query_parameters(op.query) if op.query else []),
        "responses": _responses(method, op, bool(path_params), refs, error_ref),
    }
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": _json(refs[(op.body, "validation")]),
        }
    if op.auth:
        operation["security"] = [{"bearerAuth": []}, {"cookieAuth": []}]
    else:
        operation["security"] = [{name: []} for name in op.security]
    return operation


def _responses(
    method: str,
    op: Operation,
    has_path_params: bool,
    refs: Mapping[Any, Any],
    error_ref: Any,
) -> dict[str, Any]:
    """The success response and every error an operation can answer with."""
    responses: dict[str, Any] = {}
    if op.response is None:
        responses[str(op.status)] = {"description": "Done"}
    else:
        responses[str(op.status)] = {
            "description": op.summary,
            "content": _json(refs[(op.response, "serialization")]),
        }
    if op.links:
        responses[str(op.status)]["links"] = {link.name: link.as_openapi() for link in op.links}
    for code in sorted(_error_codes(method, op, has_path_params)):
        responses[str(code)] = {
            "description": op.error_text.get(code, ERROR_TEXT[code]),
            "content": _json(error_ref),
        }
        if code in (429, 503):
            headers = RETRY_AFTER_HEADER
            if code in op.retry_after_optional:
                headers = {
                    name: {**header, "required": False}
                    for name, header in RETRY_AFTER_HEADER.items()
                }
            responses[str(code)]["headers"] = headers
    return responses


def _error_codes(method: str, op: Operation, has_path_params: bool) -> set[int]:
    codes = set(op.errors)
    if op.body is not None:
        codes |= {400, 422}
    if op.body is not None or method in BODY_METHODS:
        codes.add(413)
    if op.query is not None:
        codes.add(422)
    if op.auth:
        codes |= {401, 429}
    if has_path_params:
        codes.add(404)
    return codes
