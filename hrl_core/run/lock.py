"""One writer per run folder: a lock file with a heartbeat.

A process that writes in a run folder (``hrl finetune``, ``hrl pretrain``, a grid cell)
first creates ``<run>/.hrl.lock`` with ``O_CREAT | O_EXCL`` -- atomic on local file
systems and on NFS v3+, where ``flock`` may do nothing -- holding its host, PID, start
time and a heartbeat that a background thread refreshes every ``HEARTBEAT_SECONDS``.
A second process for the same run stops with :class:`RunLocked` (one line naming the
holder) before it touches anything.

A lock is *stale*, and is taken over with a one-line note, when its holder is gone:
on the same host, its PID no longer runs (or now belongs to another process: the PID's
start time is recorded too); on another host, its heartbeat is older than
``STALE_SECONDS``. Two processes that find the same stale lock cannot both take it:
the takeover happens under a second ``O_EXCL`` file, and only if the lock still holds
the stale holder's token.

A holder whose lock was taken over anyway (it was suspended longer than the timeout)
notices at its next heartbeat: :attr:`RunLock.lost` becomes true and the training loop
stops without writing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from hrl_core.errors import HrlError

LOCK_NAME = ".hrl.lock"
HEARTBEAT_SECONDS = 30.0  # how often a holder refreshes its heartbeat
STALE_SECONDS = 600.0  # another host's lock without a heartbeat for this long is taken over
_GUARD_STALE_SECONDS = 60.0  # a takeover guard left by a killed process
# A lock file whose content is not a lock record: either its writer is between creating and
# writing it (milliseconds) or it is garbage. Older than this, it is garbage, hence stale.
UNREADABLE_GRACE_SECONDS = 2.0


class RunLocked(HrlError):
    """Another live process holds the run folder's lock."""


def _now_iso(t: float | None = None) -> str:
    return _dt.datetime.fromtimestamp(time.time() if t is None else t).astimezone().isoformat(timespec="seconds")


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a PID reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5); the name may hold spaces


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now_start = _pid_start(pid)
    return start is None or now_start is None or now_start == start


def read_lock(run_dir: Path) -> dict | None:
    """The lock's contents; None when there is no lock. One that is not a lock record
    (caught half-written, or garbage) reads as ``unreadable``, dated by its mtime."""
    path = Path(run_dir) / LOCK_NAME
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "heartbeat" in record:
            return record
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pass
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return {"host": "?", "pid": -1, "heartbeat": mtime, "started": _now_iso(mtime), "token": None, "unreadable": True}


def stale_reason(holder: dict, now: float | None = None) -> str | None:
    """Why a lock's holder is gone (None: it is alive, or may be)."""
    now = time.time() if now is None else now
    age = now - float(holder.get("heartbeat", 0))
    if holder.get("unreadable"):
        if age > UNREADABLE_GRACE_SECONDS:
            return "its content is not a lock record (damaged or written by something else), so it is stale"
        return None  # its writer is probably filling it in right now
    if holder.get("host") == socket.gethostname() and holder.get("pid", -1) > 0:
        if not _pid_alive(int(holder["pid"]), holder.get("pid_start")):
            return f"PID {holder['pid']} is gone"
        return None
    if age > STALE_SECONDS:
        return f"no heartbeat for {age:.0f} s (limit {STALE_SECONDS:.0f} s)"
    return None


def describe(holder: dict, now: float | None = None) -> str:
    age = (time.time() if now is None else now) - float(holder.get("heartbeat", 0))
    if holder.get("unreadable"):
        return f"an unreadable lock file written {age:.0f} s ago"
    return f"{holder.get('host')} PID {holder.get('pid')} since {holder.get('started')} (heartbeat {age:.0f} s ago)"


def live_holder(run_dir: Path) -> dict | None:
    """The lock's holder if it is (or may be) alive, else None."""
    holder = read_lock(run_dir)
    if holder is None or stale_reason(holder) is not None:
        return None
    return holder


class RunLock:
    """``with RunLock(run_dir): ...`` -- hold the folder's lock while writing there."""

    def __init__(self, run_dir: str | Path, heartbeat: float = HEARTBEAT_SECONDS):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.heartbeat_seconds = heartbeat
        self.token = uuid.uuid4().hex
        self.lost = False  # set when another process took the lock over
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.time()

    # -- contents ---------------------------------------------------------------------
    def _record(self) -> dict:
        now = time.time()
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": _pid_start(os.getpid()),
            "started": _now_iso(self._started),
            "heartbeat": now,
            "heartbeat_time": _now_iso(now),
            "token": self.token,
            "command": " ".join(sys.argv)[:500],
        }

    def _write_over(self) -> None:
        tmp = self.path.with_name(f"{LOCK_NAME}.{self.token}.tmp")
        tmp.write_text(json.dumps(self._record()))
        os.replace(tmp, self.path)

    # -- acquire / release ------------------------------------------------------------
    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(self.run_dir)
                if holder is None:
                    continue  # released meanwhile: try again
                if holder.get("unreadable") and stale_reason(holder) is None:
                    time.sleep(UNREADABLE_GRACE_SECONDS)  # let a writer finish it; then it is read again
                    holder = read_lock(self.run_dir)
                    if holder is None:
                        continue
                reason = stale_reason(holder)
                if reason is None:
                    raise RunLocked(
                        f"{self.run_dir} is being written by {describe(holder)}; wait for it to finish or stop "
                        "that process (a lock whose process is gone is taken over by the next run)"
                    ) from None
                if self._take_over(holder, reason):
                    break
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(self._record()))
            break
        else:
            raise RunLocked(f"{self.run_dir}: could not take its lock (contended); run the same command again")
        self.held = True
        self._thread = threading.Thread(target=self._beat, name="hrl-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _take_over(self, holder: dict, reason: str) -> bool:
        guard = self.path.with_name(LOCK_NAME + ".takeover")
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > _GUARD_STALE_SECONDS:
                    guard.unlink(missing_ok=True)  # left by a process killed mid-takeover
            except OSError:
                pass
            time.sleep(0.2)
            return False
        os.close(fd)
        try:
            current = read_lock(self.run_dir)
            if current is None or current.get("token") != holder.get("token"):
                return False  # someone else changed it meanwhile: look again
            self._write_over()
            print(f"hrl: note: took over the stale lock of {self.run_dir.name} ({describe(holder)}: {reason})",
                  file=sys.stderr)  # fmt: skip
            return True
        finally:
            guard.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self.refresh()

    def refresh(self) -> None:
        """Renew the heartbeat (also called at every evaluation); notices a lost lock."""
        if not self.held or self.lost:
            return
        current = read_lock(self.run_dir)
        if current is None or current.get("token") != self.token:
            self.lost = True
            return
        try:
            self._write_over()
        except OSError:
            pass  # a full disk: the next beat tries again; the writer reports the disk

    def check(self) -> None:
        """Raise if the lock was taken over, or the folder or its lock removed (the loop calls this
        before writing: a run never recreates a folder someone removed, nor writes beside another)."""
        if not self.run_dir.is_dir():
            self.lost = True
            raise RunLocked(f"{self.run_dir} was removed while this run was writing it; it stops and writes "
                            "nothing there (run the same command again to start the cell anew)")  # fmt: skip
        current = read_lock(self.run_dir)
        if current is None or current.get("token") != self.token:
            self.lost = True
        if self.lost:
            if current is None:
                raise RunLocked(f"{self.run_dir}: its lock file was removed while this run was writing there; it "
                                "stops without writing (run the same command again to resume from its last "
                                "snapshot)")  # fmt: skip
            raise RunLocked(
                f"{self.run_dir}: this process lost its lock to {describe(current)} (it was stopped or suspended "
                f"longer than {STALE_SECONDS:.0f} s); it stops without writing"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held and not self.lost:
            current = read_lock(self.run_dir)
            if current is not None and current.get("token") == self.token:
                self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
