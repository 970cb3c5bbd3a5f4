"""coupon_core's errors: one tree. The service's answers on one side, set-up on the other.

    CoreError                   every error coupon_core raises on purpose
    ├── CouponError             an answer of the service (the API maps each kind to a status)
    │   ├── InvalidRequest      input breaks a rule (blank, too long, out of range)
    │   ├── CouponExists        create: the name is taken
    │   ├── CouponNotFound      claim/get: no coupon by that name
    │   ├── AlreadyClaimed      claim: this user holds this coupon already
    │   ├── CampaignClaimed     claim: this user holds another coupon of its campaign
    │   ├── NoStock             claim: nothing left
    │   ├── Unavailable         the database cannot answer now (transient)
    │   └── InternalError       anything unexpected (a bug); the cause is chained
    └── SetupError              the system could not be set up: never an answer to a request
        ├── DatabaseError       a database could not be provisioned (start, stop, container)
        └── ServerError         the server could not start (port taken, startup failed)

A driver error never leaves the service: it is chained (``raise ... from err``) so
it reaches logs and tracebacks, while ``str(error)`` stays the fixed, public text.
``SetupError`` is no ``CouponError`` on purpose: the API maps only the service's
answers, so a set-up failure can never be folded into a 4xx.
"""

from __future__ import annotations

__all__ = [
    "AlreadyClaimed",
    "CampaignClaimed",
    "CoreError",
    "CouponError",
    "CouponExists",
    "CouponNotFound",
    "DatabaseError",
    "InternalError",
    "InvalidRequest",
    "NoStock",
    "ServerError",
    "SetupError",
    "Unavailable",
]


class CoreError(Exception):
    """The root: see the module."""


class CouponError(CoreError):
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


class SetupError(CoreError, RuntimeError):
    """The system could not be set up; the message is one line, fit to show."""


class DatabaseError(SetupError):
    """The database could not be provisioned (start, stop, container)."""


class ServerError(SetupError):
    """The server could not start (port taken, startup failed or timed out)."""
