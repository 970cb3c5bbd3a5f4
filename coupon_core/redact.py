"""Show a database URL without its password: ``postgresql://tester:***@host/db``.

A URL is shown in progress lines, reports, error messages and logs; the password in
it never is. ``redact_url`` replaces the password of a libpq URI (``user:pw@``, and a
``password=`` query parameter) or of a key/value conninfo (``password=pw``) with
``***``; ``redact_text`` does the same to any text that may echo the URL (a driver's
message about a malformed URI quotes it whole).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MASK", "passwords_in", "redact_text", "redact_url"]

MASK = "***"

# scheme://[userinfo@]hosts[/db][?query]: the authority ends at the first '/', '?' or '#'.
_URI = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#]*)(?P<rest>.*)$", re.S
)
# password=... in a URI query (up to '&' or '#'), or in a key/value conninfo: a quoted
# value (backslash escapes inside) or a bare one (up to whitespace).
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)(?P<value>[^&#]*)")
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s']+)")


def redact_url(url: str) -> str:
    """``url`` with every password in it replaced by ``***`` (other parts unchanged)."""
    match = _URI.match(url)
    if match is None:  # a key/value conninfo, or no URL at all
        return _KV_PASSWORD.sub(lambda m: m["key"] + MASK, url)
    authority = match["authority"]
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:{MASK}@{hosts}"
    rest = _QUERY_PASSWORD.sub(lambda m: m["key"] + MASK, match["rest"])
    return f"{match['scheme']}{authority}{rest}"


def passwords_in(url: str) -> list[str]:
    """The passwords ``url`` carries, as written and percent-decoded (for ``redact_text``)."""
    found: list[str] = []
    match = _URI.match(url)
    if match is None:
        values = [m["value"] for m in _KV_PASSWORD.finditer(url)]
        values += [v[1:-1] for v in values if len(v) >= 2 and v[0] == v[-1] == "'"]
    else:
        userinfo, at, _ = match["authority"].rpartition("@")
        values = [userinfo.split(":", 1)[1]] if at and ":" in userinfo else []
        values += [m["value"] for m in _QUERY_PASSWORD.finditer(match["rest"])]
    for value in values:
        found += [value, unquote(value)]
    # Longest first, so a password that contains another is replaced whole.
    return sorted({v for v in found if v}, key=len, reverse=True)


def redact_text(text: str, url: str | None) -> str:
    """``text`` with every password of ``url`` replaced by ``***``, wherever it appears."""
    if not url:
        return text
    text = text.replace(url, redact_url(url))
    for secret in passwords_in(url):
        text = text.replace(secret, MASK)
    return text
