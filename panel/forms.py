"""Forms of the customer panel. Each field is checked here, before anything reaches a node,
and errors are shown next to the field they concern."""

from __future__ import annotations

from django import forms
from django.core.files.uploadedfile import UploadedFile

from panel import files
from provisioning.models import Service


def _checked(clean: object, value: object) -> str:
    try:
        return clean(value)  # type: ignore[operator]
    except files.FileError as exc:
        raise forms.ValidationError(str(exc)) from None


class FileActionForm(forms.Form):
    def apply(self, *, service: Service, folder: str) -> str:
        raise NotImplementedError


class NameForm(FileActionForm):
    name = forms.CharField(
        label="Name",
        max_length=files.MAX_NAME,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def clean_name(self) -> str:
        return _checked(files.clean_name, self.cleaned_data["name"])


class MkdirForm(NameForm):
    def apply(self, *, service: Service, folder: str) -> str:
        name = self.cleaned_data["name"]
        files.make_dir(service=service, path=files.join(folder, name))
        return f"Folder {name} created."


class NewFileForm(NameForm):
    def apply(self, *, service: Service, folder: str) -> str:
        name = self.cleaned_data["name"]
        files.make_file(service=service, path=files.join(folder, name))
        return f"File {name} created."


class PathForm(FileActionForm):
    path = forms.CharField(max_length=files.MAX_PATH, widget=forms.HiddenInput)

    def clean_path(self) -> str:
        return _checked(lambda v: files.clean_path(v, allow_root=False), self.cleaned_data["path"])


class RenameForm(PathForm, NameForm):
    name = forms.CharField(label="New name", max_length=files.MAX_NAME)

    def apply(self, *, service: Service, folder: str) -> str:
        path, name = self.cleaned_data["path"], self.cleaned_data["name"]
        files.rename(service=service, path=path, new_path=files.join(files.parent(path), name))
        return f"Renamed to {name}."


class DeleteForm(PathForm):
    def apply(self, *, service: Service, folder: str) -> str:
        path = self.cleaned_data["path"]
        files.delete(service=service, path=path)
        return f"Deleted {path.rsplit('/', 1)[-1]}."


class ChmodForm(PathForm):
    mode = forms.CharField(label="Permissions", max_length=4, help_text="Octal, e.g. 644")

    def clean_mode(self) -> str:
        return _checked(files.clean_mode, self.cleaned_data["mode"])

    def apply(self, *, service: Service, folder: str) -> str:
        path, mode = self.cleaned_data["path"], self.cleaned_data["mode"]
        files.chmod(service=service, path=path, mode=mode)
        return f"Permissions of {path.rsplit('/', 1)[-1]} set to {mode}."


class UploadForm(FileActionForm):
    file = forms.FileField(label="File")

    def clean_file(self) -> UploadedFile:
        upload: UploadedFile = self.cleaned_data["file"]
        if upload.size is not None and upload.size > files.MAX_UPLOAD:
            raise forms.ValidationError(
                f"Files are at most {files.MAX_UPLOAD // (1024 * 1024)} MB here; use SFTP."
            )
        _checked(files.clean_name, upload.name or "")
        return upload

    def apply(self, *, service: Service, folder: str) -> str:
        upload: UploadedFile = self.cleaned_data["file"]
        name = files.clean_name(upload.name or "")
        files.write_file(service=service, path=files.join(folder, name), data=upload.read())
        return f"Uploaded {name}."


class EditForm(forms.Form):
    content = forms.CharField(
        label="Content",
        required=False,
        strip=False,
        max_length=files.MAX_EDIT,
        widget=forms.Textarea(
            attrs={
                "rows": 24,
                "spellcheck": "false",
                "class": "code",
                "wrap": "off",
                "autocapitalize": "off",
                "autocomplete": "off",
            }
        ),
    )

    def clean_content(self) -> str:
        # Browsers send a textarea's line breaks as CRLF; files on a Linux host use LF.
        return str(self.cleaned_data["content"]).replace("\r\n", "\n")


FILE_ACTION_FORMS: dict[str, type[FileActionForm]] = {
    "mkdir": MkdirForm,
    "touch": NewFileForm,
    "rename": RenameForm,
    "delete": DeleteForm,
    "chmod": ChmodForm,
    "upload": UploadForm,
}
