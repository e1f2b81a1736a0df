"""Failures of the application layer, beside the domain's InvalidInput and RuleViolation."""


class NotFound(Exception):
    """The thing does not exist, or the caller may not see it (the two are not told apart)."""


class Forbidden(Exception):
    """The caller is known but its role may not do this."""


class TooMuchContention(Exception):
    """A command kept losing the race for its stream; the caller may retry."""
