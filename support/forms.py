"""Forms of the support desk; errors are shown next to the field they concern."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from support.attachments import ALLOWED_EXTENSIONS, CheckedFile, check_upload, max_bytes, max_files
from support.models import CannedReply, Department, TicketPriority
from support.selectors import departments_open_to_customers


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class AttachmentsField(forms.FileField):
    """Several files at once, each checked for size and type by content."""

    widget = MultipleFileInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            f"Up to {max_files()} files of at most {max_bytes() // (1024 * 1024)} MB each: "
            + ", ".join(sorted(ALLOWED_EXTENSIONS)),
        )
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("accept", ",".join(sorted(ALLOWED_EXTENSIONS)))

    def clean(self, data: Any, initial: Any = None) -> list[CheckedFile]:
        uploads = [f for f in (data if isinstance(data, list | tuple) else [data]) if f]
        if len(uploads) > max_files():
            raise ValidationError(f"Attach at most {max_files()} files to one message.")
        checked, errors = [], []
        for upload in uploads:
            if not isinstance(upload, UploadedFile):
                errors.append(ValidationError("No file was submitted."))
                continue
            try:
                checked.append(check_upload(upload))
            except ValidationError as exc:
                errors.append(exc)
        if errors:
            raise ValidationError(errors)
        return checked


_body_widget = forms.Textarea(attrs={"rows": 7})


class TicketOpenForm(forms.Form):
    department = forms.ModelChoiceField(queryset=Department.objects.none(), empty_label=None)
    service = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        help_text="The hosting account this is about, if any.",
    )
    priority = forms.ChoiceField(choices=TicketPriority.choices, initial=TicketPriority.NORMAL)
    subject = forms.CharField(max_length=200, min_length=4)
    body = forms.CharField(
        label="Message", widget=_body_widget, max_length=20000, strip=True, min_length=2
    )
    attachments = AttachmentsField()

    def __init__(self, *args: Any, services: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        department = self.fields["department"]
        assert isinstance(department, forms.ModelChoiceField)
        department.queryset = departments_open_to_customers()
        service = self.fields["service"]
        assert isinstance(service, forms.TypedChoiceField)
        if services:
            service.choices = [("", "Not about a particular service"), *services]
        else:
            del self.fields["service"]


class CustomerReplyForm(forms.Form):
    body = forms.CharField(
        label="Your reply", widget=_body_widget, max_length=20000, strip=True, min_length=2
    )
    attachments = AttachmentsField()


class StaffReplyForm(forms.Form):
    KIND_REPLY = "reply"
    KIND_NOTE = "note"

    kind = forms.ChoiceField(
        choices=[(KIND_REPLY, "Reply to the customer"), (KIND_NOTE, "Internal note (staff only)")],
        initial=KIND_REPLY,
        widget=forms.RadioSelect,
    )
    canned = forms.ModelChoiceField(
        queryset=CannedReply.objects.none(),
        required=False,
        label="Canned reply",
        help_text="Used as the message when the text box is left empty.",
    )
    body = forms.CharField(
        label="Message",
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        strip=True,
        max_length=20000,
    )
    resolve = forms.BooleanField(required=False, label="Mark the ticket resolved")
    attachments = AttachmentsField()

    def __init__(self, *args: Any, canned: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if canned is not None:
            field = self.fields["canned"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = canned

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("body") and data.get("canned") is not None:
            data["body"] = data["canned"].body
        if not data.get("body"):
            self.add_error("body", "Write a message or pick a canned reply.")
        if data.get("kind") == self.KIND_NOTE and data.get("resolve"):
            self.add_error("resolve", "An internal note cannot resolve the ticket; send a reply.")
        return data
