"""The web-account part of ``create`` as its own operation kind, for bench/provision.py.

The benchmark compares the engine with the same node commands sent as one script; the
full ``create`` also sets up DNS and mail, whose commands the floor script does not
contain. The worker imports this module with ``celery worker --include``.
"""

from __future__ import annotations

from provisioning.models import Operation, Service
from provisioning.steps import hosting
from provisioning.steps.base import OperationKind, register_kind

KIND = "bench_web_create"


def _created(service: Service, operation: Operation) -> list[str]:
    service.activate()
    return ["state"]


register_kind(
    OperationKind(
        name=KIND,
        steps=(
            hosting.ValidateAccount,
            hosting.LinuxUser,
            hosting.AccountLimits,
            hosting.PhpPool,
            hosting.AccountDatabase,
            hosting.SiteConfig,
            hosting.MeasureDisk,
        ),
        on_completed=_created,
    )
)
