"""Atomic file writes and hashes: a crash, Ctrl-C or a full disk never leaves a half-written artifact.

Files are created with mode 0666 minus the umask (0644 by default), like any other program's output.
A write that fails because the disk is full or read-only raises StorageError (one line with the fix);
the temp file is truncated and removed first, so the space it took is given back at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from gear_trt.errors import StorageError

# errno values that mean "this file system cannot take the write", not "this program is wrong"
_STORAGE_ERRNOS = {code: why for name, why in (("ENOSPC", "no space left on the device"), ("EROFS", "the file system is read-only"),
                                                ("EDQUOT", "the disk quota is exceeded"),
                                                ("EFBIG", "the file is larger than the file system allows"))
                   if (code := getattr(errno, name, None)) is not None}


def storage_error(exc: BaseException, path: str | os.PathLike) -> Optional[StorageError]:
    """A StorageError for `exc` (or an OSError in its chain: torch.save wraps them) if it is a full or
    read-only file system; None for anything else."""
    seen: Optional[BaseException] = exc
    for _ in range(8):  # the chain is short; the bound guards against cycles
        if seen is None:
            return None
        if isinstance(seen, StorageError):
            return seen
        if isinstance(seen, OSError) and seen.errno in _STORAGE_ERRNOS:
            why = _STORAGE_ERRNOS[seen.errno]
            if seen.errno == errno.EROFS:
                return StorageError(f"cannot write {path}: {why}",
                                    "make it writable (or pass --out on a writable disk), then re-run; "
                                    "grow/train continue from the last checkpoint with --resume")
            return StorageError(f"cannot write {path}: {why}",
                                "free some space there, then re-run; grow/train continue from the last checkpoint with --resume")
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full or read-only file system met inside the block into StorageError (other errors pass)."""
    try:
        yield
    except Exception as exc:
        err = storage_error(exc, path)
        if err is None or err is exc:
            raise
        raise err from None


def _temp_beside(path: Path) -> Path:
    """A new, empty temp file next to `path`, created with 0666 & ~umask (mkstemp would force 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp_path)` on a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _temp_beside(path)
        try:
            write(tmp_path)
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
        except BaseException:
            # Truncate before unlinking: a writer that failed may still hold the file open (torch.save's
            # handle lives on in the traceback), and an unlinked open file keeps its blocks.
            with contextlib.suppress(OSError):
                os.truncate(tmp_path, 0)
            raise
        finally:
            tmp_path.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def json_default(obj: Any) -> Any:
    """How a value JSON has no type for is written: a record by its to_dict(), anything else as text."""
    to_dict = getattr(obj, "to_dict", None)
    return to_dict() if callable(to_dict) else str(obj)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
