"""The file manager's access to an account's files on its node.

All of it goes through the engine's SSH executor (``provisioning.ssh``), one short script per
action, and every file command runs as the account's own Linux user (``runuser -u``), so
the node's permissions confine it as well as our checks do.

Confinement, in two layers:

1. ``clean_path`` refuses, before anything is sent, paths that are absolute, contain ``..``,
   NUL or control characters, or are too long. A path is always relative to the home.
2. On the node, ``hw_fm`` resolves the parent folder with ``realpath`` and refuses any result
   outside the home (a symlinked folder pointing elsewhere). Actions that follow the final
   name (read, write, list, chmod) also resolve it completely and refuse a symlink that leaves
   the home; delete and rename act on a symlink itself, never on what it points to.

The executor returns at most 4 KB of output per script, so listings come in pages that fit
and downloads are read 3,000 bytes per round trip (about 4 ms each); files above
``MAX_DOWNLOAD`` are for SFTP.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from provisioning import ssh, validators
from provisioning.errors import StepError
from provisioning.models import Service

MAX_PATH = 1024
MAX_NAME = 255
MAX_UPLOAD = 8 * 1024 * 1024
MAX_DOWNLOAD = 2 * 1024 * 1024
MAX_EDIT = 512 * 1024
CHUNK = 3000  # base64 of 3,000 bytes fits the executor's 4 KB output tail
LIST_BUDGET = 3800
EX_REFUSED = 77
EX_MISSING = 66
EX_EXISTS = 73

# Exit codes: 77 refused (outside the home), 66 missing, 73 exists, 65 wrong kind.
_FUNCTIONS = r"""
hw_fm_under() {
  case $2 in "$1"|"$1"/*) return 0 ;; esac
  echo "that path leaves the home folder" >&2; return 77
}
hw_fm() {
  local u=$1 home=$2 act=$3 rel=$4 dir base p full q
  shift 4
  # Scripts run in a subshell: this cd stays inside this one. Commands run as the account's
  # user need a working directory that user may enter.
  cd -- "$home" || return 77
  dir=$(realpath -m -- "$home/$(dirname -- "$rel")") || return 77
  hw_fm_under "$home" "$dir" || return 77
  base=$(basename -- "$rel")
  if [ "$rel" = "." ] || [ -z "$rel" ]; then p=$home; else p=$dir/$base; fi
  case $act in list|read|write|chmod|stat)
    if [ -e "$p" ] || [ -L "$p" ]; then
      full=$(realpath -m -- "$p") || return 77
      hw_fm_under "$home" "$full" || return 77
    fi ;;
  esac
  case $act in
    list)
      [ -d "$p" ] || { echo "no such folder" >&2; return 66; }
      runuser -u "$u" -- find "$p/" -mindepth 1 -maxdepth 1 -printf '%y\t%m\t%s\t%T@\t%f\n' \
        | LC_ALL=C sort -t "$(printf '\t')" -k1,1 -k5 \
        | awk -F '\t' -v skip="$1" -v budget="$2" 'NF == 5 { n++; if (n <= skip) next;
            if (used + length($0) + 1 > budget) { print "MORE\t" n - 1; exit }
            used += length($0) + 1; print }' ;;
    stat)
      [ -e "$p" ] || { echo "no such file or folder" >&2; return 66; }
      runuser -u "$u" -- stat -c '%F	%a	%s' -- "$p" ;;
    read)
      [ -f "$p" ] || { echo "no such file" >&2; return 66; }
      runuser -u "$u" -- dd if="$p" bs="$2" skip="$1" count=1 status=none | base64 -w0 ;;
    write)
      [ -d "$p" ] && { echo "a folder has that name" >&2; return 65; }
      q="$dir/.hw-upload.$$"
      printf '%s' "$1" | base64 -d | runuser -u "$u" -- dd of="$q" status=none \
        && runuser -u "$u" -- mv -f -T -- "$q" "$p" || { rm -f -- "$q"; return 1; } ;;
    mkdir)
      { [ -e "$p" ] || [ -L "$p" ]; } && { echo "that name is taken" >&2; return 73; }
      runuser -u "$u" -- mkdir -- "$p" ;;
    touch)
      { [ -e "$p" ] || [ -L "$p" ]; } && { echo "that name is taken" >&2; return 73; }
      runuser -u "$u" -- touch -- "$p" ;;
    rename)
      [ "$p" = "$home" ] && { echo "the home folder stays" >&2; return 77; }
      { [ -e "$p" ] || [ -L "$p" ]; } || { echo "no such file or folder" >&2; return 66; }
      q=$(realpath -m -- "$home/$(dirname -- "$1")") || return 77
      hw_fm_under "$home" "$q" || return 77
      q=$q/$(basename -- "$1")
      { [ -e "$q" ] || [ -L "$q" ]; } && { echo "that name is taken" >&2; return 73; }
      runuser -u "$u" -- mv -n -T -- "$p" "$q" ;;
    delete)
      [ "$p" = "$home" ] && { echo "the home folder stays" >&2; return 77; }
      { [ -e "$p" ] || [ -L "$p" ]; } || { echo "no such file or folder" >&2; return 66; }
      runuser -u "$u" -- rm -rf --one-file-system -- "$p" ;;
    chmod)
      [ "$p" = "$home" ] && { echo "the home folder's permissions are fixed" >&2; return 77; }
      [ -e "$p" ] || { echo "no such file or folder" >&2; return 66; }
      runuser -u "$u" -- chmod -- "$1" "$p" ;;
    *) echo "unknown action" >&2; return 64 ;;
  esac
}
"""
ssh.register_shell_functions(_FUNCTIONS)

_MODE = re.compile(r"^[0-7]{3,4}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FileError(Exception):
    """A file action refused or failed, with a message for the customer."""


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    kind: str  # "dir", "file", "link", "other"
    mode: str
    size: int
    modified: datetime

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def is_text(self) -> bool:
        return self.kind == "file" and self.size <= MAX_EDIT


def clean_path(value: object, *, allow_root: bool = True) -> str:
    """A path relative to the account's home, or a refusal. "" means the home itself."""
    if not isinstance(value, str):
        raise FileError("That is not a path.")
    if "\x00" in value or _CONTROL.search(value):
        raise FileError("Paths cannot contain control characters.")
    if len(value) > MAX_PATH:
        raise FileError(f"Paths are at most {MAX_PATH} characters.")
    if value.startswith("/") or value.startswith("~"):
        raise FileError("Paths are relative to your home folder.")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise FileError("Paths cannot go up a folder with '..'.")
        if len(part.encode()) > MAX_NAME:
            raise FileError(f"Names are at most {MAX_NAME} bytes.")
    path = "/".join(parts)
    if not path and not allow_root:
        raise FileError("Choose a file or folder inside your home folder.")
    return path


def clean_name(value: object) -> str:
    """One file or folder name (no slashes)."""
    name = clean_path(value, allow_root=False)
    if "/" in name:
        raise FileError("A name cannot contain '/'.")
    return name


def clean_mode(value: object) -> str:
    if not isinstance(value, str) or not _MODE.fullmatch(value.strip()):
        raise FileError("Use octal permissions such as 644 or 755.")
    return value.strip()


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _home(service: Service) -> tuple[str, str]:
    user = validators.validate_username(service.username)
    return user, f"/home/{user}"


def _run(service: Service, action: str, rel: str, *args: str) -> ssh.ScriptResult:
    from provisioning.nodes import node_target

    if service.node is None or service.state not in (Service.State.ACTIVE,):
        raise FileError("Files can be managed while the account is active.")
    user, home = _home(service)
    command = ssh.cmd(
        "hw_fm",
        user,
        home,
        action,
        rel or ".",
        *args,
        label=f"file manager: {action} {home}/{rel}",
    )
    try:
        result = ssh.run(
            node_target(service.node),
            [command],
            key_path=settings.PROVISIONING_SSH_KEY,
            timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
        )
    except StepError:
        raise FileError("The server did not answer. Try again in a moment.") from None
    if not result.ok:
        message = result.stderr.strip().splitlines()[-1:] or [""]
        text = message[0] or "The server could not do that."
        raise FileError(text[0].upper() + text[1:] + ("" if text.endswith(".") else "."))
    return result


_KINDS = {"d": "dir", "f": "file", "l": "link"}


def list_dir(*, service: Service, path: str, offset: int = 0) -> tuple[list[Entry], int | None]:
    """One page of a folder (folders first, then by name) and the offset of the next page."""
    result = _run(service, "list", path, str(max(0, offset)), str(LIST_BUDGET))
    entries: list[Entry] = []
    more: int | None = None
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if fields[0] == "MORE" and len(fields) == 2:
            more = int(fields[1])
            continue
        if len(fields) != 5:
            continue
        kind, mode, size, mtime, name = fields
        entries.append(
            Entry(
                name=name,
                path=join(path, name),
                kind=_KINDS.get(kind, "other"),
                mode=mode,
                size=int(size),
                modified=datetime.fromtimestamp(float(mtime), tz=UTC),
            )
        )
    return entries, more


def stat(*, service: Service, path: str) -> tuple[str, str, int]:
    """(kind, mode, size) of one path."""
    out = _run(service, "stat", path).stdout.strip().split("\t")
    if len(out) != 3:
        raise FileError("The server gave an unreadable answer.")
    kind = "dir" if out[0] == "directory" else "file" if "regular" in out[0] else "other"
    return kind, out[1], int(out[2])


def read_file(*, service: Service, path: str, limit: int = MAX_DOWNLOAD) -> bytes:
    kind, _mode, size = stat(service=service, path=path)
    if kind != "file":
        raise FileError("Only files can be opened.")
    if size > limit:
        raise FileError(
            f"This file is {size // 1024} KB; files above {limit // 1024} KB are downloaded "
            "over SFTP."
        )
    data = bytearray()
    block = 0
    while len(data) < size:
        chunk = base64.b64decode(_run(service, "read", path, str(block), str(CHUNK)).stdout)
        if not chunk:
            break
        data += chunk
        block += 1
    return bytes(data)


def write_file(*, service: Service, path: str, data: bytes) -> None:
    if len(data) > MAX_UPLOAD:
        raise FileError(f"Files are at most {MAX_UPLOAD // (1024 * 1024)} MB here; use SFTP.")
    _run(service, "write", clean_path(path, allow_root=False), base64.b64encode(data).decode())


def make_dir(*, service: Service, path: str) -> None:
    _run(service, "mkdir", clean_path(path, allow_root=False))


def make_file(*, service: Service, path: str) -> None:
    _run(service, "touch", clean_path(path, allow_root=False))


def rename(*, service: Service, path: str, new_path: str) -> None:
    _run(
        service,
        "rename",
        clean_path(path, allow_root=False),
        clean_path(new_path, allow_root=False),
    )


def delete(*, service: Service, path: str) -> None:
    _run(service, "delete", clean_path(path, allow_root=False))


LOG_KINDS = ("access", "error")
LOG_TAIL_BYTES = 3500  # the executor returns 4 KB of output


def log_tail(*, service: Service, kind: str) -> str:
    """The last lines of the account's nginx access or error log (read as root: nginx owns
    them; the path is built from the validated account name, nothing the customer typed)."""
    from provisioning.nodes import node_target

    if kind not in LOG_KINDS:
        raise FileError("There is no such log.")
    if service.node is None or service.state != Service.State.ACTIVE:
        raise FileError("Logs can be read while the account is active.")
    user = validators.validate_username(service.username)
    path = f"/var/log/nginx/hw-{user}.{kind}.log"
    try:
        result = ssh.run(
            node_target(service.node),
            [ssh.cmd("tail", "-c", str(LOG_TAIL_BYTES), path, check=False)],
            key_path=settings.PROVISIONING_SSH_KEY,
            timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
        )
    except StepError:
        raise FileError("The server did not answer. Try again in a moment.") from None
    text = result.stdout
    if len(text.encode()) >= LOG_TAIL_BYTES and "\n" in text:
        text = text.split("\n", 1)[1]  # drop the first, partial line
    return text


def chmod(*, service: Service, path: str, mode: str) -> None:
    _run(service, "chmod", clean_path(path, allow_root=False), clean_mode(mode))
