"""The unit of node work the resources hand to the engine's SSH executor."""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeScript:
    """A bash script for the node (run as root with ``bash -s``), built only from validated
    values quoted with ``shlex.quote``, and the values a recorded copy must hide."""

    script: str
    secrets: tuple[str, ...] = ()

    def for_log(self) -> str:
        """The script as it may be stored in a step's record: secrets replaced by ``***``."""
        text = self.script
        for secret in self.secrets:
            text = text.replace(shlex.quote(secret), "'***'").replace(secret, "***")
        return text

    def argv(self) -> list[str]:
        """How to run it: the script itself goes on stdin, never into the process list."""
        return ["bash", "-s"]
