"""The OpenAPI 3.1 document of the HTTP API, written by hand to match the contract."""

from __future__ import annotations

import copy
from typing import Any

from coupon_core.bundles import MAX_BUNDLE
from coupon_core.validation import MAX_AMOUNT, MAX_NAME_LENGTH

__all__ = ["openapi_document"]

# A required text field: not blank (some non-space character) and storable (no NUL).
_TEXT: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME_LENGTH,
    "pattern": "^[^\\x00]*[^\\s\\x00][^\\x00]*$",
}

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


def _error(description: str, example: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {**_ERROR, "example": {"error": example}}},
        },
    }


def _common() -> dict[str, Any]:
    return {
        "503": _error("the database is unavailable", "service unavailable"),
        "500": _error("unexpected error", "internal server error"),
    }


def _body_errors() -> dict[str, Any]:
    return {
        "413": _error("body over 1 MiB", "request body too large"),
    }


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Coupon service",
        "version": "1.0.0",
        "description": (
            "A flash-sale coupon service. Request bodies are JSON objects sent as "
            "application/json, at most 1 MiB; unknown fields are ignored. A missing field "
            "reads `invalid request: <field> is required`."
        ),
    },
    "paths": {
        "/api/coupons": {
            "post": {
                "operationId": "createCoupon",
                "summary": "Create a coupon with a stock of `amount`.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CreateCoupon"},
                        },
                    },
                },
                "responses": {
                    "201": {"description": "created (empty body)"},
                    "400": _error("invalid input", "invalid request: name is required"),
                    "409": _error("the name is taken", "coupon already exists"),
                    **_body_errors(),
                    **_common(),
                },
            },
            "get": {
                "operationId": "getCoupons",
                "summary": (
                    "Read several coupons from one snapshot, in the order asked; missing "
                    "ones are left out. `names` is split on raw commas before "
                    "percent-decoding (a name's own comma is `%2C`, its `+` is `%2B`); "
                    "`names` may also be repeated."
                ),
                "parameters": [
                    {
                        "name": "names",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the coupons found, in the order asked",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Coupons"},
                            },
                        },
                    },
                    "400": _error(
                        "names missing, blank, repeated or too many",
                        "invalid request: names is required",
                    ),
                    **_common(),
                },
            },
        },
        "/api/coupons/claim": {
            "post": {
                "operationId": "claimCoupon",
                "summary": "Claim one unit of a coupon for a user (once per user).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ClaimCoupon"},
                        },
                    },
                },
                "responses": {
                    "200": {"description": "claimed (empty body)"},
                    "400": _error(
                        "invalid input, or out of stock",
                        "coupon out of stock",
                    ),
                    "404": _error("no such coupon", "coupon not found"),
                    "409": _error(
                        "the user claimed it, or another coupon of its campaign, before",
                        "coupon already claimed by user",
                    ),
                    **_body_errors(),
                    **_common(),
                },
            },
        },
        "/api/bundles/claim": {
            "post": {
                "operationId": "claimBundle",
                "summary": "Claim every coupon of the list for a user, or none.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ClaimBundle"},
                        },
                    },
                },
                "responses": {
                    "200": {"description": "all claimed (empty body)"},
                    "400": _error("invalid input, or one out of stock", "coupon out of stock"),
                    "404": _error("one coupon does not exist", "coupon not found"),
                    "409": _error(
                        "one claimed before, or its campaign",
                        "campaign already claimed by user",
                    ),
                    **_body_errors(),
                    **_common(),
                },
            },
        },
        "/api/coupons/{name}": {
            "get": {
                "operationId": "getCoupon",
                "summary": "Read a coupon; the name is percent-encoded and not validated.",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the coupon, with its claimants in claim order",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Coupon"},
                            },
                        },
                    },
                    "404": _error("no such coupon", "coupon not found"),
                    **_common(),
                },
            },
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Whether the database answers.",
                "responses": {
                    "200": {
                        "description": "healthy",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Health"},
                            },
                        },
                    },
                    "503": {
                        "description": "unhealthy",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Health"},
                            },
                        },
                    },
                    "500": _error("unexpected error", "internal server error"),
                },
            },
        },
    },
    "components": {
        "schemas": {
            "CreateCoupon": {
                "type": "object",
                "required": ["name", "amount"],
                "properties": {
                    "name": _TEXT,
                    "amount": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT},
                    "campaign": {"anyOf": [_TEXT, {"type": "null"}]},
                },
            },
            "ClaimBundle": {
                "type": "object",
                "required": ["user_id", "coupon_names"],
                "properties": {
                    "user_id": _TEXT,
                    "coupon_names": {
                        "type": "array",
                        "items": _TEXT,
                        "minItems": 1,
                        "maxItems": MAX_BUNDLE,
                        "uniqueItems": True,
                    },
                },
            },
            "Coupons": {
                "type": "object",
                "required": ["coupons"],
                "properties": {
                    "coupons": {"type": "array", "items": {"$ref": "#/components/schemas/Coupon"}},
                },
            },
            "ClaimCoupon": {
                "type": "object",
                "required": ["user_id", "coupon_name"],
                "properties": {"user_id": _TEXT, "coupon_name": _TEXT},
            },
            "Coupon": {
                "type": "object",
                "required": ["name", "amount", "remaining_amount", "claimed_by"],
                "properties": {
                    "name": {"type": "string"},
                    "amount": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT},
                    "remaining_amount": {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT},
                    "claimed_by": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_DOCUMENT)
