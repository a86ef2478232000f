"""Per-account backups: what the panel checks before the node acts.

The node agent's ``backup.*`` actions make, verify, restore and prune backups: a backup is a
root-only directory ``/var/backups/hostwright/<account>/<backup id>/`` on the node with the
home (archived by the account's own user), one dump per database, checksums and a report of
each component. A restore verifies first and then makes the home exactly what the backup
holds (files made since are removed), as the account's user.
"""

from __future__ import annotations

import re

from provisioning.errors import ProvisioningRefused

_BACKUP_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z(?:-[a-z0-9]{1,8})?")
MAX_KEEP = 90


def validate_backup_id(value: str) -> str:
    """Backup ids are UTC timestamps (``20261122T213000Z``), optionally with a short tag."""
    if not isinstance(value, str) or not _BACKUP_ID.fullmatch(value):
        raise ProvisioningRefused(f"{value!r} is not a backup id.", code="backup_id")
    return value


def validate_keep(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_KEEP:
        raise ProvisioningRefused(f"Keep between 1 and {MAX_KEEP} backups.", code="backup_keep")
    return value
