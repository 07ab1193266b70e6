"""User-facing errors: one line saying what is wrong, one saying how to fix it.

The CLI prints a GearError as a single line on stderr and exits 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class GearError(Exception):
    """An error the user can fix. `fix` says how."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


class ConfigError(GearError):
    """A bad option, argument or config value."""


class DataError(GearError):
    """A data source that is missing, empty or unreadable."""


class BudgetError(GearError):
    """A growth budget that cannot be met."""


class ArtifactError(GearError):
    """A checkpoint, ONNX file, engine or run directory that is missing, corrupt or mismatched."""


class BackendUnavailable(GearError):
    """An optional backend (TensorRT, CUDA, ModelOpt) is not installed or has no device."""


class StorageError(GearError):
    """A write refused by the file system: the disk is full, read-only or over quota."""


class RunLocked(GearError):
    """A run directory that another live process is writing."""


class GearWarning(UserWarning):
    """Something the user should know that did not stop the command (the CLI prints it as one line)."""
