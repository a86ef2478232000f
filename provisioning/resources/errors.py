"""Errors raised by the node resources.

``ResourceRefused`` means the request was refused before anything reached a node (bad input,
a plan limit); its message is meant for the customer. ``ResourceError`` is a failure of an
outside system; ``permanent`` says whether trying again can help.
"""

from __future__ import annotations


class ResourceError(Exception):
    """A node service or an outside system failed; ``permanent`` errors are not retried."""

    permanent: bool = False

    def __init__(self, message: str, *, permanent: bool | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        if permanent is not None:
            self.permanent = permanent

    def __str__(self) -> str:
        return self.message


class ResourceRefused(ResourceError, ValueError):
    """Bad input or a limit: refused before any network or SSH traffic."""

    permanent = True


def check_limit(*, what: str, used: int, allowed: int) -> None:
    """Refuse one more ``what`` when ``used`` already reaches ``allowed`` (the plan's limit).

    The message names the limit so the customer knows what to change.
    """
    if used >= allowed:
        raise ResourceRefused(
            f"Your plan allows {allowed} {what}; you already have {used}.",
            code="limit",
        )
