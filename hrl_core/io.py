"""Atomic file output: a kill at any instant leaves the previous good version.

Every result file is written to a temporary file in the same folder, flushed and
fsync'ed, then renamed over the destination (``os.replace`` is atomic on POSIX
within one file system).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)  # results are shared: readable like any other file
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
