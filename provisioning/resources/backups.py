"""Per-account backups on the node: files and database dumps, verified, restorable, pruned.

A backup is a directory ``/var/backups/hostwright/<account>/<backup id>/`` holding:

- ``files.tar.gz``: the account's home directory (owners and modes kept);
- ``db-<database>.sql.gz``: one ``mariadb-dump --single-transaction`` per database;
- ``SHA256SUMS``: checksums of the above;
- ``report.jsonl``: one line per component, ``{"component", "ok", "bytes", "error"}``.

Every component is attempted and reported; the script exits non-zero if any failed, so a
failed dump can never pass as a good backup. ``backup_verify_script`` checks the checksums,
that every archive is readable, and that every dump loads into a scratch database.
``backup_restore_script`` verifies first, then puts files and databases back.
``parse_report`` turns the report lines into what the panel shows.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from provisioning.resources.errors import ResourceRefused
from provisioning.resources.scripts import NodeScript
from provisioning.resources.validation import validate_account, validate_db_name

BACKUP_ROOT = "/var/backups/hostwright"
_BACKUP_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z(?:-[a-z0-9]{1,8})?$")
MAX_KEEP = 90


def validate_backup_id(value: str) -> str:
    """Backup ids are UTC timestamps (``20261122T213000Z``), optionally with a short tag."""
    if not isinstance(value, str) or not _BACKUP_ID.match(value):
        raise ResourceRefused(f"{value!r} is not a backup id.", code="backup_id")
    return value


def backup_dir(account: str, backup_id: str) -> str:
    return f"{BACKUP_ROOT}/{validate_account(account)}/{validate_backup_id(backup_id)}"


def _databases(account: str, databases: Sequence[str]) -> list[str]:
    return [validate_db_name(account=account, name=d) for d in databases]


_REPORT_FN = """report() {  # component ok bytes error
  printf '{"component": "%s", "ok": %s, "bytes": %s, "error": "%s"}\\n' \\
    "$1" "$2" "$3" "$(printf '%s' "$4" | tr -d '"\\\\' | tr '\\n' ' ' | cut -c1-300)" \\
    >> "$dir/report.jsonl"
}
"""


def backup_create_script(
    *, account: str, backup_id: str, databases: Sequence[str], home_root: str = "/home"
) -> NodeScript:
    """Back up the account's home and databases into a new backup directory."""
    account = validate_account(account)
    dbs = _databases(account, databases)
    if home_root not in ("/home",) and not re.fullmatch(r"/[a-z0-9/_-]+", home_root):
        raise ResourceRefused("Unusable home root.", code="backup_home")
    q = shlex.quote
    target = backup_dir(account, backup_id)
    lines = [
        "set -uo pipefail",
        f"dir={q(target)}",
        'if [ -e "$dir/report.jsonl" ]; then echo "backup exists already" >&2; exit 0; fi',
        'install -d -m 0700 "$dir"',
        ': > "$dir/report.jsonl"',
        _REPORT_FN,
        "failed=0",
        f"if err=$(tar --create --gzip --one-file-system --numeric-owner"
        f' -C {q(home_root)} -f "$dir/files.tar.gz" {q(account)} 2>&1); then',
        '  report files true "$(stat -c %s "$dir/files.tar.gz")" ""',
        'else report files false 0 "$err"; failed=1; fi',
    ]
    for db in dbs:
        out = f'"$dir/db-{db}.sql.gz"'
        lines += [
            f"if err=$( {{ mariadb-dump --single-transaction --routines --triggers"
            f" --databases {q(db)} | gzip -c > {out}; }} 2>&1 ) && [ -s {out} ]; then",
            f'  report {q("db:" + db)} true "$(stat -c %s {out})" ""',
            f'else report {q("db:" + db)} false 0 "$err"; failed=1; fi',
        ]
    lines += [
        '(cd "$dir" && sha256sum -- *.gz > SHA256SUMS)',
        'cat "$dir/report.jsonl"',
        'exit "$failed"',
    ]
    return NodeScript("\n".join(lines) + "\n")


def backup_verify_script(*, account: str, backup_id: str) -> NodeScript:
    """Checksums match, archives are readable, and each dump loads into a scratch database."""
    account = validate_account(account)
    scratch = validate_db_name(account=account, name="hwverify")
    q = shlex.quote
    return NodeScript(
        "set -euo pipefail\n"
        f"dir={q(backup_dir(account, backup_id))}\n"
        'cd "$dir"\n'
        "sha256sum --quiet -c SHA256SUMS\n"
        "gzip -t -- *.gz\n"
        "tar -tzf files.tar.gz > /dev/null\n"
        "for dump in db-*.sql.gz; do\n"
        '  [ -e "$dump" ] || continue\n'
        f"  mariadb -e {q(f'DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`')}\n"
        # The dump names its database (--databases); load it into the scratch one instead.
        "  gunzip -c \"$dump\" | sed -E '/^(CREATE DATABASE|USE) /d'"
        f" | mariadb {q(scratch)}\n"
        f"  mariadb -e {q(f'DROP DATABASE `{scratch}`')}\n"
        "done\n"
        "echo verified\n"
    )


def backup_restore_script(*, account: str, backup_id: str, home_root: str = "/home") -> NodeScript:
    """Verify the backup, then restore the account's files and databases from it.

    Files are unpacked over the home directory (files created since stay); each database is
    dropped and loaded from its dump.
    """
    account = validate_account(account)
    verify = backup_verify_script(account=account, backup_id=backup_id).script
    q = shlex.quote
    return NodeScript(
        verify.replace("echo verified\n", "")
        + f"tar -xzf files.tar.gz --same-owner --numeric-owner -C {q(home_root)}\n"
        "for dump in db-*.sql.gz; do\n"
        '  [ -e "$dump" ] || continue\n'
        "  db=${dump#db-}; db=${db%.sql.gz}\n"
        '  [[ $db =~ ^[a-z0-9_]+$ ]] || { echo "unexpected dump $dump" >&2; exit 1; }\n'
        '  mariadb -e "DROP DATABASE IF EXISTS \\`$db\\`"\n'
        '  gunzip -c "$dump" | mariadb\n'
        "done\n"
        "echo restored\n"
    )


def backup_prune_script(*, account: str, keep: int) -> NodeScript:
    """Keep the newest ``keep`` backups of the account (ids sort by time), delete the rest."""
    account = validate_account(account)
    if not 1 <= keep <= MAX_KEEP:
        raise ResourceRefused(f"Keep between 1 and {MAX_KEEP} backups.", code="backup_keep")
    root = shlex.quote(f"{BACKUP_ROOT}/{account}")
    return NodeScript(
        "set -euo pipefail\n"
        f"[ -d {root} ] || exit 0\n"
        f"ls -1 {root} | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z(-[a-z0-9]{{1,8}})?$' | sort -r"
        f' | tail -n +{keep + 1} | while read -r old; do rm -rf -- {root}/"$old"; done\n'
        f"ls -1 {root}\n"
    )


@dataclass(frozen=True)
class ComponentResult:
    component: str
    ok: bool
    bytes: int
    error: str


def parse_report(text: str) -> list[ComponentResult]:
    """The report lines printed by a backup script, as results per component."""
    results = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        data = json.loads(line)
        results.append(
            ComponentResult(
                component=str(data["component"]),
                ok=bool(data["ok"]),
                bytes=int(data["bytes"]),
                error=str(data["error"]),
            )
        )
    return results
