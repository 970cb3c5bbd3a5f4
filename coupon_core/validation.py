"""Input rules shared by the service and the HTTP API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from coupon_core.errors import InvalidRequest

__all__ = ["MAX_AMOUNT", "MAX_NAME_LENGTH", "choose", "validate_amount", "validate_text"]

T = TypeVar("T")

MAX_NAME_LENGTH = 255
MAX_AMOUNT = 2_147_483_647  # PostgreSQL INTEGER


def validate_text(field: str, value: object) -> str:
    """A required string: present, a string, not blank, at most 255 characters, storable."""
    if value is None:
        raise InvalidRequest(f"{field} is required")
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string")
    if not value.strip():
        raise InvalidRequest(f"{field} must not be blank")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"{field} must be at most {MAX_NAME_LENGTH} characters")
    # PostgreSQL text cannot hold NUL, and a lone surrogate has no UTF-8 encoding.
    if "\x00" in value:
        raise InvalidRequest(f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{field} must be valid Unicode text") from None
    return value


def validate_amount(value: object) -> int:
    """A required JSON integer from 1 to 2147483647 (not a float, string or boolean)."""
    if value is None:
        raise InvalidRequest("amount is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest("amount must be an integer")
    if not 1 <= value <= MAX_AMOUNT:
        raise InvalidRequest(f"amount must be between 1 and {MAX_AMOUNT}")
    return value


def storable(value: str) -> bool:
    """Whether ``value`` could be a stored name at all (used by reads, which never reject)."""
    if "\x00" in value or len(value) > MAX_NAME_LENGTH:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def choose(table: Mapping[str, T], what: str, name: str, choices: Iterable[str] = ()) -> T:
    """``table[name]``, else a ValueError naming ``what`` and the choices (``choices``
    when given: the ones to offer, which may be fewer than the table holds)."""
    try:
        return table[name]
    except (KeyError, TypeError):
        offered = ", ".join(choices or table)
        raise ValueError(f"unknown {what} {name!r}; choose one of {offered}") from None
