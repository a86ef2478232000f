"""Which operations may start on a service in each of its states, and by whom.

``operation_start`` (every start: panel, customer API, provisioning API, admin, drift repair,
beat jobs) and ``operation_retry`` ask ``operation_refusal`` before anything is queued. The
table is the whole rule; nothing else decides it.

Who: ``ANYONE`` is the customer (panel or token) as well as staff and the system; ``STAFF`` is a
staff user, or no user at all (billing automation, the signed provisioning API, beat jobs).

============  ===========================================================================
state         may start
============  ===========================================================================
pending       ``create`` (anyone: the order)
active        every kind but ``create`` (anyone); ``repair`` and ``move`` (staff)
suspended     ``unsuspend``, ``suspend``, ``backup_create``, ``backup_restore``
              (staff and billing); ``terminate`` (anyone: closing an
              account through billing's cancellation is the customer's right)
failed        ``create`` again (a retry), ``terminate`` (anyone)
terminated    nothing
============  ===========================================================================
"""

from __future__ import annotations

from accounts.models import User
from provisioning.models import Service

ANYONE, STAFF = "anyone", "staff"
EVERY_KIND = "*"

RULES: dict[str, dict[str, str]] = {
    Service.State.PENDING: {"create": ANYONE},
    Service.State.ACTIVE: {EVERY_KIND: ANYONE, "repair": STAFF, "move": STAFF},
    Service.State.SUSPENDED: {
        "unsuspend": STAFF,
        "suspend": STAFF,
        "backup_create": STAFF,
        "backup_restore": STAFF,
        "terminate": ANYONE,
    },
    Service.State.FAILED: {"create": ANYONE, "terminate": ANYONE},
    Service.State.TERMINATED: {},
}
# Kinds that the EVERY_KIND entry does not cover: they have their own line or none at all.
NOT_COVERED_BY_EVERY = frozenset({"create"})


def is_staff_or_system(actor: User | None) -> bool:
    return actor is None or bool(actor.is_staff)


def operation_refusal(*, service: Service, kind: str, actor: User | None) -> str:
    """Why ``kind`` may not start on ``service`` for ``actor`` now ("" when it may)."""
    state = str(service.state)
    rules = RULES.get(state, {})
    who = rules.get(kind)
    if who is None and kind not in NOT_COVERED_BY_EVERY:
        who = rules.get(EVERY_KIND)
    label = service.get_state_display().lower()
    if who is None:
        if state == Service.State.TERMINATED:
            return f"{service.domain} is terminated: nothing can be changed on it any more."
        if state == Service.State.SUSPENDED:
            return f"{service.domain} is suspended: it can be changed again once it is unsuspended."
        return f"{service.domain} is {label}: this cannot be done now."
    if who == STAFF and not is_staff_or_system(actor):
        if state == Service.State.SUSPENDED:
            return (
                f"{service.domain} is suspended: only support or billing can act on it until "
                "it is unsuspended."
            )
        return "Only support staff can start this."
    return ""
