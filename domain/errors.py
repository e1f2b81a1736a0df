"""Why the domain refuses: bad input values, or a rule."""


class DomainError(Exception):
    pass


class InvalidInput(DomainError):
    """A value that can never be valid (quantity 0, a malformed amount, an unknown currency)."""


class RuleViolation(DomainError):
    """A valid request the aggregate's current state refuses (adding to a submitted order)."""


def quoted(value: object, limit: int = 40) -> str:
    """`repr(value)`, cut to `limit` characters: messages never echo a whole huge input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."
