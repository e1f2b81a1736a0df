"""`api.errors.bounded`: error messages quote at most 200 characters of any input."""

from __future__ import annotations

from api.errors import MAX_MESSAGE, MAX_QUOTED, bounded


def test_short_messages_and_short_quotes_are_kept() -> None:
    message = "Value 'PAID' does not exist in 'OrderStatus' enum. " + "x" * 200
    assert bounded(message) == message


def test_each_long_quote_is_cut_and_the_text_around_it_kept() -> None:
    message = f"Int cannot represent {'Z' * 5000!r}; found: \"{'Y' * 5000}\" here"
    cut = bounded(message)
    assert cut == f"Int cannot represent '{'Z' * MAX_QUOTED}...'; found: \"{'Y' * MAX_QUOTED}...\" here"


def test_escaped_quotes_stay_inside_their_quote() -> None:
    value = "a\\'b" * 100  # as repr escapes a quote
    cut = bounded(f"bad '{value}' end")
    assert cut.endswith("...' end") and cut.count("'") - cut.count("\\'") == 2


def test_an_unclosed_quote_is_cut_too() -> None:
    assert bounded("bad '" + "Z" * 1000) == "bad '" + "Z" * MAX_QUOTED + "..."


def test_any_message_is_bounded() -> None:
    for message in ("'z" * 300_000, "plain " * 100_000, "\"'" * 100_000):
        assert len(bounded(message)) <= MAX_MESSAGE + 3
