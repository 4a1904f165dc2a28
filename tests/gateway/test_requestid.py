"""Request ids: the caller's when safe, else a new one; on every log line of the request."""

from __future__ import annotations

import logging

import pytest

from inferd.gateway import requestid


@pytest.mark.parametrize("given", ["abc-123", "a" * 128, "trace:1/2@x+y=z.q_r"])
def test_a_safe_id_is_kept(given: str) -> None:
    assert requestid.accept(given) == given


@pytest.mark.parametrize(
    "given", [None, "", "a" * 129, "has space", "line\nbreak", 'quote"d', "é", "\x1b[31m"]
)
def test_anything_else_is_replaced(given: str | None) -> None:
    made = requestid.accept(given)
    assert made != given and len(made) == 32 and made.isalnum()


def test_the_filter_names_the_current_request() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    requestid.RequestIdFilter().filter(record)
    assert record.request_id == "-"
    token = requestid.current.set("r-1")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        requestid.RequestIdFilter().filter(record)
        assert record.request_id == "r-1"
    finally:
        requestid.current.reset(token)
