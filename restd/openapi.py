"""The OpenAPI 3.1 document, generated from the route table and the wire models.

Each handler declares its ``operations`` (one ``Operation`` per HTTP method)
next to its code; this module turns the route table into the document served
at ``/api/openapi.json``. Pydantic's JSON Schema (2020-12) is the schema
dialect of OpenAPI 3.1, so models go into ``components.schemas`` unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from restd.models import ErrorBody

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
        item: dict[str, Any] = {}
        path_params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": route.params.get(name, "^[^/]+$")},
            }
            for name in _PARAM_RE.findall(route.template)
        ]
        for method, op in ops.items():
            responses: dict[str, Any] = {}
            if op.response is None:
                responses[str(op.status)] = {"description": "Done"}
            else:
                responses[str(op.status)] = {
                    "description": op.summary,
                    "content": _json(refs[(op.response, "serialization")]),
                }
            codes = set(op.errors)
            if op.body is not None:
                codes |= {400, 422}
            if op.body is not None or method in BODY_METHODS:
                codes.add(413)
            if op.query is not None:
                codes.add(422)
            if op.auth:
                codes |= {401, 429}
            if path_params:
                codes.add(404)
            for code in sorted(codes):
                responses[str(code)] = {
                    "description": ERROR_TEXT[code],
                    "content": _json(error_ref),
                }
                if code in (429, 503):
                    responses[str(code)]["headers"] = RETRY_AFTER_HEADER
            operation: dict[str, Any] = {
                "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{method}{route.template}").strip(
                    "_"
                ),
                "summary": op.summary,
                "tags": [op.tag],
                "parameters": path_params + (_query_parameters(op.query) if op.query else []),
                "responses": responses,
            }
            if op.body is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": _json(refs[(op.body, "validation")]),
                }
            operation["security"] = [{"bearerAuth": []}, {"cookieAuth": []}] if op.auth else []
            item[method] = operation
        paths[route.template] = item

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "access_token"},
            },
        },
    }
