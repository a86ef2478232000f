"""What a ticket attachment may be: size limits and an allow-list of types judged by content.

The browser's content type and the file name's extension are both chosen by the
sender, so neither is trusted: the first bytes decide the type, and the
extension must agree with it (a PHP script renamed ``.png`` is refused).
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_FILES = 5

# extension -> the type its content must have
ALLOWED_EXTENSIONS: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".csv": "text/plain",
}

_SNIFF_BYTES = 8192


def max_bytes() -> int:
    return int(getattr(settings, "SUPPORT_ATTACHMENT_MAX_BYTES", DEFAULT_MAX_BYTES))


def max_files() -> int:
    return int(getattr(settings, "SUPPORT_ATTACHMENT_MAX_FILES", DEFAULT_MAX_FILES))


def sniff_type(head: bytes, *, complete: bool) -> str | None:
    """The allowed type these first bytes belong to, or None.

    ``complete`` says ``head`` is the whole file, so a text check need not
    worry about a multi-byte character cut at the end.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if b"\x00" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sniffed window may end inside a character; anything else is binary.
        if complete or exc.start < len(head) - 3:
            return None
    return "text/plain"


def clean_filename(name: str) -> str:
    """A name safe to show and to offer for download: no path, no control characters."""
    base = os.path.basename(name.replace("\\", "/"))
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip(" .")
    return base[:200] or "attachment"


@dataclass(frozen=True)
class CheckedFile:
    upload: UploadedFile
    name: str
    content_type: str
    size: int


def check_upload(upload: UploadedFile) -> CheckedFile:
    """Refuse a file that is too big, empty, or not of an allowed type; else describe it."""
    name = clean_filename(upload.name or "")
    size = int(upload.size or 0)
    limit = max_bytes()
    if size > limit:
        raise ValidationError(
            f"{name} is too large ({size // 1024} KB); files may be at most {limit // 1024} KB.",
            code="too_large",
        )
    if size == 0:
        raise ValidationError(f"{name} is empty.", code="empty")
    ext = os.path.splitext(name)[1].lower()
    expected = ALLOWED_EXTENSIONS.get(ext)
    if expected is None:
        allowed = ", ".join(sorted(ALLOWED_EXTENSIONS))
        raise ValidationError(
            f"{name}: this kind of file cannot be attached. Allowed: {allowed}.",
            code="type",
        )
    upload.seek(0)
    head = upload.read(_SNIFF_BYTES)
    upload.seek(0)
    actual = sniff_type(head, complete=size <= _SNIFF_BYTES)
    if actual != expected:
        raise ValidationError(
            f"{name}: the content does not match its {ext} extension.", code="content"
        )
    return CheckedFile(upload=upload, name=name, content_type=actual, size=size)
