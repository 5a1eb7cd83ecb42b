"""One process executes a run at a time: the lock ``runs/<study>/<run>/run.lock``.

The process that executes a run holds its lock: a small JSON file naming it (pid, host, boot id,
the pid's start time, when it started, a random token), put in place with ``os.link`` of a whole
temp file, which fails if a lock is already there and is atomic on local disks and NFS alike. So
two processes that reach one run together cannot both take it, and no reader sees half a lock.
While it holds the lock a thread touches the file every ``HEARTBEAT_S`` seconds.

A lock is *live* while its holder runs: on the host and boot that wrote it, while its pid runs (the
same process: its start time matches); elsewhere (another node sharing ``runs/``), while its
heartbeat is younger than ``STALE_S``, measured on the file system's clock, not this machine's. A
lock whose holder died (kill -9, a power cut, a lost node) is *stale*: the next process that
reaches the run takes it over (renamed away, checked to be the stale one, replaced by its own).
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from dapt.core.errors import DaptError
from dapt.core.files import pid_runs

LOCK_NAME = "run.lock"
HEARTBEAT_S = 20.0
# Longer than NFS's attribute caching (actimeo, at most 60 s by default) plus a few missed heartbeats.
STALE_S = 180.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its file records it."""

    pid: int
    host: str
    boot: str  # the kernel's boot id: a pid means the same process only within one boot
    pid_start: str  # the pid's start time since boot (/proc), against pid reuse
    started: float  # when the lock was taken, seconds since the epoch
    token: str  # this hold's own mark: a release or takeover touches only the lock it means

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host} (since {since})"

    @classmethod
    def this_process(cls) -> "Holder":
        return cls(os.getpid(), socket.gethostname(), _boot_id(), _pid_start(os.getpid()), time.time(),
                   uuid.uuid4().hex)


class RunHeld(DaptError):
    """The run is being executed by another live process; the message names it and what to do."""

    def __init__(self, folder: Path, holder: Holder):
        self.holder = holder
        super().__init__(f"run {folder.as_posix()} is being executed by {holder.describe()}; wait for it to end "
                         f"(dapt status shows it), or stop that process: a lock whose process is gone is taken "
                         f"over by the next dapt run (docs/reliability.md)")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: the pid check then trusts the pid alone
        return ""


def _pid_start(pid: int) -> str:
    try:  # field 22 of /proc/<pid>/stat, counted after the command name, which may hold spaces
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def lock_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / LOCK_NAME


def _read(path: Path) -> Holder | None:
    """The holder a lock file names; None when there is none, or it is not a lock this module wrote."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), str(data["boot"]), str(data["pid_start"]),
                      float(data["started"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fs_now(folder: Path) -> float:
    """The file system's clock, which stamps the heartbeats of every host sharing it: a fresh file's mtime."""
    fd, probe = tempfile.mkstemp(prefix=f".{LOCK_NAME}.{os.getpid()}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        return os.stat(probe).st_mtime
    finally:
        os.unlink(probe)


def _alive(holder: Holder, path: Path) -> bool:
    """Whether the process that wrote the lock at ``path`` still holds it (see the module's rules)."""
    if holder.host == socket.gethostname() and holder.boot == _boot_id():
        if not pid_runs(holder.pid):
            return False
        return not holder.pid_start or _pid_start(holder.pid) == holder.pid_start
    try:
        beat = path.stat().st_mtime
    except OSError:
        return False
    try:
        now = _fs_now(path.parent)
    except OSError:  # a folder this process may only read: its own clock is the best there is
        now = time.time()
    return now - beat < STALE_S


def holder(folder: str | os.PathLike) -> Holder | None:
    """The live holder of the run in ``folder``, or None when nobody (alive) executes it."""
    path = lock_path(folder)
    found = _read(path)
    return found if found is not None and _alive(found, path) else None


class RunLock:
    """A held run lock: refreshed by a heartbeat thread until ``release`` (or the end of a ``with``)."""

    def __init__(self, path: Path, me: Holder, took_over: Holder | None):
        self.path, self.me, self.took_over = path, me, took_over
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"dapt-lock-{path.parent.name}", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if _read(self.path) != self.me:
                return  # taken over (this process looked dead to another one): nothing of ours to refresh
            try:
                os.utime(self.path)  # no times given: the file system's clock, as _fs_now reads it
            except OSError:
                pass  # shared storage away for a moment; the next beat tries again

    def release(self) -> None:
        self._stop.set()
        if _read(self.path) == self.me:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(folder: str | os.PathLike) -> RunLock:
    """Hold the run in ``folder`` (created if missing) for this process; raise ``RunHeld`` naming the live
    holder if another process executes it. A stale lock is taken over (``RunLock.took_over`` names it)."""
    folder = Path(folder)
    path = lock_path(folder)
    me = Holder.this_process()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{LOCK_NAME}.{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise DaptError(f"cannot write the lock of run {folder.as_posix()} ({err.strerror}); fix the permissions "
                        f"of {folder.as_posix()}") from None
    took_over = None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(me), f)
            f.flush()
            os.fsync(f.fileno())
        for _ in range(5):  # each pass either takes the lock, or finds it held, or removes a stale one
            try:
                os.link(tmp, path)
                return RunLock(path, me, took_over)
            except FileExistsError:
                pass
            current = _read(path)
            if current is not None and _alive(current, path):
                raise RunHeld(folder, current)
            if _remove_stale(path, current):
                took_over = current
        raise DaptError(f"run {folder.as_posix()}: its lock changed hands five times while this process tried to "
                        f"take it; another dapt run is starting it: wait for it, then run again")
    finally:
        os.unlink(tmp)


def _remove_stale(path: Path, stale: Holder | None) -> bool:
    """Move the stale lock at ``path`` out of the way. Two processes may judge it stale at once: the rename
    lets only one of them move it, and a lock moved that is not the one judged (a new holder's, linked in
    between) is put back."""
    moved = path.with_name(f".{LOCK_NAME}.stale.{uuid.uuid4().hex}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return False  # another process moved it first
    try:
        if _read(moved) != stale:
            try:
                os.link(moved, path)
            except FileExistsError:
                pass
            return False
        return True
    finally:
        moved.unlink(missing_ok=True)
