"""Template context for every page: who is impersonating the signed-in customer, if anyone."""

from __future__ import annotations

from django.http import HttpRequest

from panel.impersonation import SESSION_KEY


def impersonation(request: HttpRequest) -> dict[str, object]:
    session = getattr(request, "session", None)
    if session is None:
        return {}
    data = session.get(SESSION_KEY)
    if not data:
        return {}
    return {"impersonator_email": data.get("email", "")}
