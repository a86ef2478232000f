"""The agent's one error type: a code a program can act on and a message a person can read."""

from __future__ import annotations


class AgentError(Exception):
    """An action refused or failed.

    ``code`` is a short stable word (``invalid``, ``not_found``, ``conflict``, ``busy``,
    ``unsafe_path``, ``failed``, ...); ``message`` is written for the customer or agent who
    reads it (never a command line or a script); ``permanent`` says whether a retry can help;
    ``changed`` lists what the action had already changed on the node before it failed.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        permanent: bool = True,
        changed: list[str] | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.permanent = permanent
        self.changed = list(changed or [])
        # For the operator's step record only (command output tails); never shown to customers.
        self.detail = detail

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "permanent": self.permanent,
            "changed": self.changed,
            "detail": self.detail,
        }


def invalid(message: str) -> AgentError:
    return AgentError("invalid", message)


def busy(message: str) -> AgentError:
    return AgentError("busy", message, permanent=False)
