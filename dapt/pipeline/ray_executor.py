"""``dapt run FILE --executor ray``: a study's independent runs in parallel, as Ray tasks.

Each ready run (every run it needs is settled; see ``schedule.Schedule``) becomes one Ray task
that executes its notebook with papermill through the same ``runner.run_one`` as the local
executor, in the repository checkout at the driver's path, writing the same records into
``runs/``. So every node needs the checkout at that path and ``runs/`` (and the datasets) on
storage shared with the driver; each task checks this before it starts.

At most as many runs are in flight as the cluster holds at once (its CPUs / ``cpus_per_run``,
its GPUs / ``gpus_per_run``, read when the study starts), so every submitted run is executing,
not queued: after a failure without ``--keep-going`` nothing more is submitted, and the runs
already executing finish and keep their records (the local executor, running one at a time, has
none in flight). Ctrl-C or SIGTERM cancels the runs in flight: each is interrupted like a local
run (kernel stopped, ``interrupted`` recorded, partial notebook kept).
"""
from __future__ import annotations

import logging
import os
import platform
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

from dapt.core import lock as run_lock
from dapt.core.errors import DaptError
from dapt.core.files import atomic_write_text
from dapt.core.records import mark_status
from dapt.pipeline.schedule import Outcome, Schedule
from dapt.pipeline.study import RunSpec

# A cancelled run has this long to stop its kernel and record itself; then its worker is killed.
CANCEL_GRACE_S = 30.0
KILL_RELEASE_S = 15.0  # how long a task killed by force may take to let go of its run's lock
# The driver's wandb settings (mode, API key, ...) reach the runs; WANDB_SERVICE is this process's own.
_FORWARDED_PREFIX = "WANDB_"


def _run_in_worker(root: str, marker: str, spec: RunSpec, log_output: bool) -> Outcome:
    """The body of one Ray task: check the shared storage, then ``run_one`` in the checkout at ``root``."""
    from dapt.pipeline.runner import configure_logging, run_one

    if not (Path(root) / marker).is_file():
        raise DaptError(f"node {platform.node()} does not see {root}/{marker}: every node needs the repository "
                        f"checkout at {root} and runs/ on storage shared with the driver (NFS or similar)")
    os.environ["DAPT_ROOT"] = root  # the notebooks find the repository, and so runs/, through it
    os.chdir(root)
    if log_output:
        configure_logging()
    return run_one(spec, log_output)


class RayExecutor:
    """Executes a ``Schedule`` on a Ray cluster (``address``), or on a local Ray instance it starts.

    A Ray session already open in this process (``ray.init`` by the caller) is used as it is and
    left open; one started here is shut down at the end.
    """

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise DaptError("--executor ray needs Ray, which is not installed: pip install ray "
                            "(or pip install -e '.[ray]' in the repository)") from None
        if not cpus_per_run > 0:
            raise DaptError(f"--cpus-per-run must be above 0, not {cpus_per_run:g}")
        if not gpus_per_run >= 0:
            raise DaptError(f"--gpus-per-run must be 0 or more, not {gpus_per_run:g}")
        if address is not None:
            _check_reachable(address)
        self.address, self.cpus_per_run, self.gpus_per_run = address, cpus_per_run, gpus_per_run

    def __call__(self, schedule: Schedule, log_output: bool = True) -> None:
        import ray

        if schedule.finished:
            return
        opened_here = not ray.is_initialized()
        if opened_here:
            on_sigterm = signal.getsignal(signal.SIGTERM)
            self._connect(log_output)
            # ray.init installs its own SIGTERM handler, which aborts the process: SIGTERM must stay an
            # interrupt (cli._interrupt) that cancels the runs in flight and records them
            if on_sigterm is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, on_sigterm)
        study_folder = schedule.states[0].spec.folder.parent
        marker = study_folder / f".ray-driver-{uuid.uuid4().hex}"  # what a worker must see: shared runs/
        atomic_write_text(marker, "written by the `dapt run --executor ray` driver; deleted when it ends\n")
        try:
            self._drive(schedule, marker.as_posix(), log_output)
        finally:
            marker.unlink(missing_ok=True)
            if opened_here:
                ray.shutdown()

    def _connect(self, log_output: bool) -> None:
        import ray

        quiet = {"logging_level": logging.WARNING, "log_to_driver": log_output}
        try:
            if self.address is None:
                ray.init(include_dashboard=False, **quiet)
            else:
                ray.init(address=self.address, **quiet)
        except Exception as err:  # ray.init raises plain Exception, ConnectionError, RuntimeError, ...
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if self.address is None:
                raise DaptError(f"could not start a local Ray instance ({reason}); try again, or run without "
                                "--executor ray") from None
            raise DaptError(f"cannot connect to the Ray cluster at {self.address} ({reason}); start one with "
                            "`ray start --head` on its head node, or leave out --address to start a local "
                            "Ray instance") from None

    def _slots(self) -> int:
        """How many runs the cluster executes at once, from its resources now."""
        import ray

        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        slots = int(cpus // self.cpus_per_run)
        if self.gpus_per_run:
            slots = min(slots, int(gpus // self.gpus_per_run))
        if slots < 1:
            raise DaptError(f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs, too few for one run "
                            f"(--cpus-per-run {self.cpus_per_run:g}, --gpus-per-run {self.gpus_per_run:g}); "
                            "lower them or add nodes")
        return slots

    def _drive(self, schedule: Schedule, marker: str, log_output: bool) -> None:
        import ray

        slots = self._slots()
        task = ray.remote(_run_in_worker)
        env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_PREFIX) and k != "WANDB_SERVICE"}
        options = {"num_cpus": self.cpus_per_run, "num_gpus": self.gpus_per_run,
                   "max_retries": 0,  # a run that crashed is failed, as in the local executor; never re-executed
                   **({"runtime_env": {"env_vars": env}} if env else {})}
        root = os.getcwd()  # run_study made it the repository root
        in_flight: dict = {}  # Ray object ref → the run's spec
        try:
            while not schedule.finished:
                for spec in schedule.ready(limit=slots - len(in_flight)):
                    ref = task.options(name=f"dapt:{spec.name}", **options).remote(root, marker, spec, log_output)
                    in_flight[ref] = spec
                if not in_flight:
                    continue  # runs were settled without executing; decide the next ones
                # a short timeout: the signal handlers (Ctrl-C, SIGTERM) run between waits
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
                for ref in done:
                    spec = in_flight.pop(ref)
                    schedule.finish(spec.name, _outcome(ref, spec))
        except KeyboardInterrupt:
            _cancel(schedule, in_flight)
            raise


def _check_reachable(address: str) -> None:
    """Refuse an ``ip:port`` no Ray head listens on at once: ray.init would retry it for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", "ray://..." and the like: ray.init resolves them
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise DaptError(f"cannot connect to the Ray cluster at {address} ({err.strerror or err}); start one with "
                        "`ray start --head` on its head node, or leave out --address to start a local "
                        "Ray instance") from None


def _outcome(ref, spec: RunSpec) -> Outcome:
    """The task's ``Outcome``; a task that died outside ``run_one`` (a node lost, a worker killed, the
    shared-storage check) is recorded ``failed`` here, with Ray's reason."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        cause = getattr(err, "cause", None) or err
        reason = f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
        _mark_unless_held(spec, "failed", reason)
        return Outcome("failed", 0.0, reason)


def _cancel(schedule: Schedule, in_flight: dict) -> None:
    """Interrupt the runs in flight: Ray raises KeyboardInterrupt in each task, whose ``run_one`` stops
    the kernel and records ``interrupted``; a task still busy after ``CANCEL_GRACE_S`` is killed."""
    import ray

    if not in_flight:
        return
    for ref in in_flight:
        ray.cancel(ref)
    _, stuck = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=CANCEL_GRACE_S)
    for ref in stuck:
        ray.cancel(ref, force=True)
    _await_release([in_flight[ref] for ref in stuck], KILL_RELEASE_S)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    for spec in in_flight.values():
        _mark_unless_held(spec, "interrupted")  # also for a killed task, which could not record itself
        schedule.interrupted(spec.name)


def _await_release(specs: list[RunSpec], timeout: float) -> None:
    """Wait, at most ``timeout`` seconds, until no live process holds these runs: ``ray.cancel(force=True)``
    only asks for the kill, and a worker still dying would otherwise keep its run from being marked."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(run_lock.holder(spec.folder) is not None for spec in specs):
        time.sleep(0.2)


def _mark_unless_held(spec: RunSpec, status: str, reason: str | None = None) -> None:
    """Record the end of a task that could not record it, unless a live process holds the run: another
    executor's run is not ours to mark (nor is a lost node's, until its lock goes stale)."""
    if run_lock.holder(spec.folder) is None:
        mark_status(spec.folder, status, reason)
