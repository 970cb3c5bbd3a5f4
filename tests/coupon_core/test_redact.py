"""Showing a URL without its password."""

from __future__ import annotations

import pytest

from coupon_core.redact import passwords_in, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://tester:s3cretPW@host/db", "postgresql://tester:***@host/db"),
        (
            "postgres://tester:s3cret@h:5432/db?sslmode=off",
            "postgres://tester:***@h:5432/db?sslmode=off",
        ),
        # A percent-encoded '@' in the password, several hosts, a password parameter too.
        (
            "postgresql://u:p%40ss@h1:5432,h2:5433/db?password=zz&sslmode=require",
            "postgresql://u:***@h1:5432,h2:5433/db?password=***&sslmode=require",
        ),
        ("postgresql://:pw@/db?host=/tmp", "postgresql://:***@/db?host=/tmp"),
        ("host=x password=abc user=u", "host=x password=*** user=u"),
        ("host=x password='a b\\'c' user=u", "host=x password=*** user=u"),
        # Nothing secret: unchanged.
        ("postgresql://tester@host/db", "postgresql://tester@host/db"),
        (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/postgres",
        ),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    for secret in passwords_in(url):
        assert secret not in shown


def test_passwords_in_names_them_as_written_and_decoded() -> None:
    assert passwords_in("postgresql://u:p%40ss@h/db?password=zz") == ["p%40ss", "p@ss", "zz"]
    assert passwords_in("postgresql://u@h/db") == []


def test_redact_text_scrubs_a_message_that_quotes_the_url() -> None:
    url = "postgresql://tester:p%40ss word@h/db"
    message = f'unexpected spaces found in "{url}"; the password was p@ss word'
    scrubbed = redact_text(message, url)
    assert "p%40ss" not in scrubbed
    assert "p@ss" not in scrubbed
    assert "postgresql://tester:***@h/db" in scrubbed
    assert redact_text("nothing to hide", None) == "nothing to hide"
