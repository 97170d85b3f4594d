"""Atomic file output: a kill at any instant leaves the previous good version.

Every result file is written to a temporary file in the same folder, flushed and
fsync'ed, then renamed over the destination (``os.replace`` is atomic on POSIX
within one file system).

A write that fails for lack of space (a full disk, a quota, a read-only file system)
raises :class:`DiskFull`, a one-line error naming the file, the free space and what to
do; the destination keeps its previous version.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from hrl_core.errors import HrlError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


class DiskFull(HrlError):
    """A result file could not be written for lack of space (or a read-only disk)."""


def _space_error(exc: BaseException) -> OSError | None:
    """The no-space OSError behind ``exc``, if any. torch's writer reports ENOSPC as a
    RuntimeError ("unexpected pos ...") whose context is the OSError."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _free_text(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if free < 1024 or unit == "TB":
            return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
        free /= 1024
    return ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _FILE_MODE)  # results are shared: readable like any other file
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = _space_error(exc)
        if cause is not None:
            raise DiskFull(
                f"cannot write {path}: {cause.strerror or 'no space left'} ({_free_text(path.parent)} in "
                f"{path.parent}); free space and run the same command to resume"
            ) from None
        raise


def _json_safe(obj):
    """NaN/inf are not JSON: write them as null so every reader accepts the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(path, data: dict) -> None:
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False, default=str) + "\n"
    _atomic_write(path, lambda fh: fh.write(text.encode()))


def write_torch(path, obj) -> None:
    _atomic_write(path, lambda fh: torch.save(obj, fh))


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())
