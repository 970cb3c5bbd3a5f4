"""coupon_core: a flash-sale coupon service on PostgreSQL (the system under test)."""

from __future__ import annotations

from coupon_core.database import (
    DatabaseError,
    DatabaseHandle,
    EmbeddedPostgres,
    ExternalDatabase,
    provision,
)
from coupon_core.errors import (
    AlreadyClaimed,
    CouponError,
    CouponExists,
    CouponNotFound,
    InternalError,
    InvalidRequest,
    NoStock,
    Unavailable,
)
from coupon_core.redact import redact_url
from coupon_core.schema import SCHEMA_SQL, apply_schema
from coupon_core.service import CouponService, CouponView, ServiceConfig
from coupon_core.strategies import (
    STRATEGIES,
    ClaimStrategy,
    FaultHook,
    available_strategies,
    get_strategy,
    register_strategy,
)

__all__ = [
    "SCHEMA_SQL",
    "STRATEGIES",
    "AlreadyClaimed",
    "ClaimStrategy",
    "CouponError",
    "CouponExists",
    "CouponNotFound",
    "CouponService",
    "CouponView",
    "DatabaseError",
    "DatabaseHandle",
    "EmbeddedPostgres",
    "ExternalDatabase",
    "FaultHook",
    "InternalError",
    "InvalidRequest",
    "NoStock",
    "ServiceConfig",
    "Unavailable",
    "apply_schema",
    "available_strategies",
    "get_strategy",
    "provision",
    "redact_url",
    "register_strategy",
]
