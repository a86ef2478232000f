"""Errors of the provisioning engine, the node resources included.

``ProvisioningRefused`` is what a caller sees when a request is refused before anything
reaches a node (bad input, a plan limit, another operation running); its message is meant
for the customer. ``StepError`` and its subclasses describe what went wrong while a step
ran or an outside system (a node, the certificate authority) failed; ``permanent`` says
whether trying again can help.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError


class ProvisioningRefused(ValidationError, ValueError):
    """A request the engine will not act on: bad input, a limit, or another operation is
    running. ``message`` and ``code`` say what and why; trying again cannot help."""

    permanent = True


class StepError(Exception):
    """A step could not do its work. ``permanent`` errors are not retried.

    ``message`` is what the customer reads (the operation's reason, the panel, the API): say
    what went wrong and what to do, never a command. ``detail`` is the technical account for
    staff (the command, its exit code, the output), kept in the admin's step record only.
    """

    permanent: bool = True
    detail: str = ""
    # The node the failed request went to, when a step speaks to more than its service's.
    node_id: int | None = None

    def __init__(
        self,
        message: str,
        *,
        permanent: bool | None = None,
        clean: bool = False,
        code: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        # The node agent's error code (``invalid``, ``conflict``, ``unsafe_path``...), if any.
        self.code = code
        # clean: nothing changed on the node before the failure, so no undo is needed.
        self.clean = clean
        if permanent is not None:
            self.permanent = permanent

    def __str__(self) -> str:
        return self.message


class TransientStepError(StepError):
    """Connect failures, timeouts, a busy node: worth another attempt after a pause."""

    permanent = False


class NodeUnreachable(TransientStepError):
    """The node did not answer at all (no TCP connection, no SSH handshake).

    Counted by the node's circuit breaker (``provisioning.breaker``).
    """


class PermanentStepError(StepError):
    """Validation failures, a name taken on the node, a config the node rejects."""

    permanent = True


class HostKeyRefused(PermanentStepError):
    """The node presented an unknown or changed host key: nothing is sent to it."""


class OutcomeUnknown(TransientStepError):
    """A command timed out or the connection dropped while it ran.

    The next attempt looks at the node before acting, which resolves the outcome.
    """
