"""The coupon service's errors: one small hierarchy, raised at the service boundary.

    CouponError                 base of every error the service raises
    ├── InvalidRequest          input breaks a rule (blank, too long, out of range)
    ├── CouponExists            create: the name is taken
    ├── CouponNotFound          claim/get: no coupon by that name
    ├── AlreadyClaimed          claim: this user holds this coupon already
    ├── CampaignClaimed         claim: this user holds another coupon of its campaign
    ├── NoStock                 claim: nothing left
    ├── Unavailable             the database cannot answer now (transient)
    └── InternalError           anything unexpected (a bug); the cause is chained

A driver error never leaves the service: it is chained (``raise ... from err``) so
it reaches logs and tracebacks, while ``str(error)`` stays the fixed, public text.
"""

from __future__ import annotations

__all__ = [
    "AlreadyClaimed",
    "CampaignClaimed",
    "CouponError",
    "CouponExists",
    "CouponNotFound",
    "InternalError",
    "InvalidRequest",
    "NoStock",
    "Unavailable",
]


class CouponError(Exception):
    """Base of the service's errors; ``kind`` names it in histories and reports."""

    kind: str = "error"
    message: str = "coupon error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)


class InvalidRequest(CouponError):
    """The input breaks a rule; the message says which (``invalid request: ...``)."""

    kind = "invalid"
    message = "invalid request"

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid request: {reason}")
        self.reason = reason


class CouponExists(CouponError):
    kind = "coupon_exists"
    message = "coupon already exists"


class CouponNotFound(CouponError):
    kind = "not_found"
    message = "coupon not found"


class AlreadyClaimed(CouponError):
    kind = "already_claimed"
    message = "coupon already claimed by user"


class CampaignClaimed(CouponError):
    """A user holds at most one coupon of a campaign (docs/multirow.md)."""

    kind = "campaign_claimed"
    message = "campaign already claimed by user"


class NoStock(CouponError):
    kind = "no_stock"
    message = "coupon out of stock"


class Unavailable(CouponError):
    """The database could not answer (down, pool exhausted, timed out, retries spent)."""

    kind = "unavailable"
    message = "service unavailable"


class InternalError(CouponError):
    """Something the service did not expect; the public text says nothing more."""

    kind = "internal"
    message = "internal server error"
