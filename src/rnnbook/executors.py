"""Where a sweep's runs execute: in this process, in worker processes on this machine, or on Ray.

* :class:`LocalExecutor`: one run after the other in this process (``--workers 1``).
* :class:`PoolExecutor`: ``workers`` processes on this machine (``rnnbook build``'s default,
  one per core). A training run of the book (a 64-unit recurrence, batches of 128) is made of
  many small operations that keep one core busy at best, so two runs side by side, one thread
  each, finish sooner than the same two runs one after the other with two threads each. The
  processes are started with ``spawn`` (TensorFlow is not fork-safe) and stay up between the
  sweeps of one process (their models and traced steps are reused,
  :func:`rnnbook.engine.prepare_run`); a sweep too small to pay for starting them runs in
  this process.
* :class:`RayExecutor`: one Ray task per run, on a local Ray or a cluster.

Every run uses :data:`rnnbook.runtime.RUN_THREADS` intra-op threads, the protocol's fixed
thread count, so a run's numbers are the same whichever executor ran it and however many runs
share the machine. Whatever the executor, the driver gets ``done(i, record)`` once per run as it
finishes and writes the run cache (:func:`rnnbook.sweeps.run_sweep`): a run that raises is a
failed record; a worker process that dies (killed, out of memory, a crash in TensorFlow) is
replaced and its run retried :data:`MAX_RETRIES` times before it becomes a failed record; on
Ctrl-C the records already sent back are passed on first, then the workers stop: only the
runs in flight are lost. A worker whose driver is killed outright exits within seconds, mid-run.
"""
from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Callable

from rnnbook import runtime

if TYPE_CHECKING:  # the build imports this module without TensorFlow
    from rnnbook.training import TrainConfig

#: Environment variables through which ``rnnbook build`` chooses the executor of the chapters.
EXECUTOR_ENV = "RNNBOOK_EXECUTOR"
WORKERS_ENV = "RNNBOOK_WORKERS"
RAY_ADDRESS_ENV = "RNNBOOK_RAY_ADDRESS"
RAY_CPUS_ENV = "RNNBOOK_RAY_CPUS_PER_RUN"
EXECUTORS = ("local", "ray")
#: Ray retries of a run whose task raised or whose worker died.
RAY_MAX_RETRIES = 2

Done = Callable[[int, dict], None]


class SweepError(RuntimeError):
    """A sweep cannot go on (bad executor settings, lost cluster); the message says why."""


def train(config: TrainConfig) -> dict:
    """The executors' default trainer: :func:`rnnbook.training.train`, imported on first use (so
    that importing this module, or :mod:`rnnbook.sweeps`, does not import TensorFlow). Looked up
    at call time, so tests can replace it."""
    from rnnbook import training

    return training.train(config)


#: A run that fails with one of these ran out of memory: it stops its sweep (and its chapter) at once.
RESOURCE_ERRORS = ("MemoryError", "ResourceExhaustedError", "OutOfMemoryError")


def failed_record(config: TrainConfig, error: BaseException | str) -> dict:
    """The record of a run that raised: its configuration, ``failed`` and the error; no results.
    An error of :data:`RESOURCE_ERRORS` (an exception, or a worker's ``"Name: message"``) is raised
    instead: every run after it would fail the same way."""
    names = [c.__name__ for c in type(error).__mro__] if isinstance(error, BaseException) else [error.split(":")[0]]
    if set(names) & set(RESOURCE_ERRORS):
        raise error if isinstance(error, BaseException) else MemoryError(f"a run ran out of memory: {error}")
    error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    nan = float("nan")
    return {"config": config.to_dict(), "failed": True, "error": error, "diverged": False,
            "diverged_step": None, "test_acc": nan, "test_acc_last_good": nan, "chance": nan,
            "epoch_train_acc": [], "epoch_val_acc": [], "steps": {}, "wall_time": nan,
            "seconds_per_epoch": nan}


# ----------------------------------------------------------------------------- in this process
class LocalExecutor:
    """Runs one after the other in this process, in the order given (``--workers 1``; more
    workers: :class:`PoolExecutor`)."""

    name = "local"

    def __init__(self, trainer: Callable[[TrainConfig], dict] | None = None):
        self.trainer = trainer  # None: this module's ``train`` (looked up at call time)

    def run(self, configs: list[TrainConfig], done: Done) -> None:
        """Call ``done(i, record)`` for each configuration; an exception becomes a failed record."""
        for i, config in enumerate(configs):
            try:
                record = (self.trainer or train)(config)
            except Exception as exc:  # noqa: BLE001  (a failed run is recorded, not raised)
                record = failed_record(config, exc)
            done(i, record)


# ----------------------------------------------------------------------------- worker processes
#: Retries of a run whose worker process died (a run that raises is not retried: it would again).
MAX_RETRIES = 2
#: Seconds a stopping worker gets to exit before it is killed.
STOP_SECONDS = 5.0
#: A sweep with fewer trained frames (updates x batch x T, at the cap) runs in this process unless
#: the workers are already up: starting them (TensorFlow's import, tracing) costs about as much as
#: training this many frames (a quick build's sweeps are far below it, a default build's far above).
MIN_POOL_FRAMES = 2_000_000


def default_workers() -> int:
    """Worker processes that fill this machine: its usable cores over the threads of a run."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // runtime.RUN_THREADS)


#: Seconds between a worker's checks that its driver is still alive (:func:`_exit_with`).
ORPHAN_CHECK_SECONDS = 2.0


def _exit_with(driver: int) -> None:
    """Exit this worker soon after process ``driver`` is gone (killed, say), even in the middle
    of a run: its record could not be passed on, and an orphan would hold a core for nothing."""
    import threading
    import time

    def watch():
        while os.getppid() == driver:
            time.sleep(ORPHAN_CHECK_SECONDS)
        os._exit(3)

    threading.Thread(target=watch, name="rnnbook-orphan-watch", daemon=True).start()


def _serve(conn, threads: int) -> None:
    """A worker process: configure TensorFlow, then ``(i, config, trainer)`` in (trainer None:
    :func:`train`), ``(status, i, record or error)`` out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops the workers
    _exit_with(os.getppid())
    runtime.configure(threads)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if message is None:
            return
        i, config, trainer = message
        try:
            reply = ("ok", i, (trainer or train)(config))
        except Exception as exc:  # noqa: BLE001  (a failed run is recorded, not raised)
            reply = ("error", i, f"{type(exc).__name__}: {exc}")
        conn.send(reply)


class _Worker:
    def __init__(self, context, threads: int):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, threads), daemon=True,
                                       name="rnnbook-worker")
        self.process.start()
        child.close()
        self.job: int | None = None  # the run it is training (index into the configs of a sweep)
        self.layout: str | None = None

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
        self.process.join(STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_SECONDS)
        self.conn.close()


def _layout(config) -> str:
    """What decides whether a worker can reuse its model for ``config`` (see ``engine.RUN_FIELDS``)."""
    from rnnbook.engine import RUN_FIELDS

    d = config.to_dict()
    return repr(sorted((k, v) for k, v in d.items() if k not in RUN_FIELDS or k == "seq_len"))


def _updates(config) -> int:
    return config.max_updates or config.epochs * math.ceil(config.n_train / config.batch_size)


def expected_cost(config) -> float:
    """Relative cost of a run for ordering a sweep, longest first: updates (the cap of a run to a
    criterion) times a per-update cost that grows slowly with T (at short T the CNN dominates)."""
    gates = {"simple_rnn": 1, "gru": 3, "lstm": 4}.get(config.cell, 1)
    return _updates(config) * config.batch_size * (1 + gates * config.seq_len * config.units / 50_000)


class PoolExecutor:
    """Runs on ``workers`` processes of this machine, ``threads`` intra-op threads each.

    ``trainer`` (default :func:`train`) must be picklable (a module-level
    function). A sweep of fewer than ``min_frames`` trained frames runs in this process while no
    worker is up (:data:`MIN_POOL_FRAMES`). Use :func:`pool` to share one set of processes
    between the sweeps of a process.
    """

    name = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None,
                 trainer: Callable | None = None, max_retries: int = MAX_RETRIES, log=None,
                 min_frames: float = MIN_POOL_FRAMES):
        self.workers = int(workers or default_workers())
        self.threads = int(threads or runtime.RUN_THREADS)
        if self.workers < 1 or self.threads < 1:
            raise ValueError(f"workers={workers!r} and threads={threads!r} must be positive integers")
        self.trainer, self.max_retries, self.log, self.min_frames = trainer, int(max_retries), log, min_frames
        self._context = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []
        self.retried: list[int] = []  # runs whose worker died, one entry per retry (for the tests)

    def _start(self) -> _Worker:
        worker = _Worker(self._context, self.threads)
        self._pool.append(worker)
        return worker

    def close(self, kill: bool = False) -> None:
        """Stop every worker process (``kill``: at once, not after its current run)."""
        pool, self._pool = self._pool, []
        for worker in pool:
            worker.stop(kill or worker.job is not None)

    def run(self, configs: list, done: Callable[[int, dict], None]) -> None:
        """Call ``done(i, record)`` for each configuration as it finishes (longest expected
        first); a run that raises or whose worker died :data:`MAX_RETRIES` + 1 times gets a
        failed record. Ctrl-C (or any error of the driver) passes on the records already sent
        back, stops the workers and raises."""
        if not configs:
            return
        if not self._pool and sum(_updates(c) * c.batch_size * c.seq_len for c in configs) < self.min_frames:
            LocalExecutor(self.trainer).run(configs, done)
            return
        todo = sorted(range(len(configs)), key=lambda i: -expected_cost(configs[i]))
        layouts = [_layout(c) for c in configs]
        tries = [0] * len(configs)
        finished = 0
        while len(self._pool) < min(self.workers, len(configs)):
            self._start()
        print(f"local: {len(configs)} run(s) on {len(self._pool)} worker process(es), {self.threads} thread(s) each",
              file=self.log or sys.__stderr__, flush=True)
        try:
            while finished < len(configs):
                for worker in list(self._pool):
                    if worker.job is None and todo and not worker.process.is_alive():  # died while idle
                        self._pool.remove(worker)
                        worker.stop(kill=True)
                        worker = self._start()
                    if worker.job is None and todo:
                        # the longest run left, preferring one whose model this worker already has
                        pick = next((k for k, i in enumerate(todo[:4]) if layouts[i] == worker.layout), 0)
                        worker.job = todo.pop(pick)
                        worker.layout = layouts[worker.job]
                        try:
                            worker.conn.send((worker.job, configs[worker.job], self.trainer))
                        except (BrokenPipeError, ConnectionResetError):  # it just died: _collect retries
                            pass
                busy = [w for w in self._pool if w.job is not None]
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    if worker.conn in ready or worker.process.sentinel in ready:
                        finished += self._collect(worker, configs, done, tries, todo)
        except BaseException:
            self._drain(configs, done)
            self.close(kill=True)
            raise

    def _collect(self, worker: _Worker, configs, done, tries, todo) -> int:
        """Pass on what ``worker`` sent back, or handle its death; the runs finished (0 or 1)."""
        i = worker.job
        try:
            status, j, payload = worker.conn.recv()
        except (EOFError, OSError):  # the process died with run i
            worker.process.join(STOP_SECONDS)
            code = worker.process.exitcode
            self._pool.remove(worker)
            worker.job = None
            worker.stop(kill=True)
            tries[i] += 1
            if tries[i] <= self.max_retries:
                self.retried.append(i)
                todo.insert(0, i)
                self._start()
                return 0
            done(i, failed_record(configs[i],
                                  f"WorkerDied: its worker process exited with code {code} ({tries[i]} tries)"))
            if todo:
                self._start()
            return 1
        worker.job = None
        assert j == i, (i, j)
        done(i, payload if status == "ok" else failed_record(configs[i], payload))
        return 1

    def _drain(self, configs, done) -> None:
        """The records already sent back by the workers, passed on before they are stopped."""
        for worker in self._pool:
            try:
                if worker.job is not None and worker.conn.poll(0):
                    status, i, payload = worker.conn.recv()
                    worker.job = None
                    done(i, payload if status == "ok" else failed_record(configs[i], payload))
            except BaseException:  # noqa: BLE001  (best effort while stopping)
                continue


_POOLS: dict[tuple, PoolExecutor] = {}


def pool(workers: int | None = None, threads: int | None = None) -> PoolExecutor:
    """The process-wide :class:`PoolExecutor` of ``workers`` x ``threads`` (the default trainer),
    started on first use and stopped when this process exits."""
    key = (int(workers or default_workers()), int(threads or runtime.RUN_THREADS))
    executor = _POOLS.get(key)
    if executor is None:
        executor = _POOLS[key] = PoolExecutor(*key)
    return executor


@atexit.register
def _close_pools() -> None:
    for executor in list(_POOLS.values()):
        try:
            executor.close()
        except Exception:  # noqa: BLE001  (exiting)
            print("rnnbook: could not stop a worker process", file=sys.__stderr__)
    _POOLS.clear()


# ----------------------------------------------------------------------------- Ray
def _ray_run(config: TrainConfig, trainer) -> tuple[dict, str]:
    """One Ray task: a run's record and the id of the node it ran on (with the protocol's threads,
    :func:`rnnbook.runtime.configure`, whatever ``cpus_per_run`` reserves)."""
    import ray

    record = (trainer or train)(config)
    return record, ray.get_runtime_context().get_node_id()


class RayExecutor:
    """One Ray task per run (``cpus_per_run`` CPUs each, retried ``max_retries`` times when it
    raises or its worker dies); the results come back to the driver as they finish.

    ``address``: None starts (or reuses) a Ray on this machine; ``"auto"`` or
    ``"ray://host:10001"`` joins a running cluster.
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: float = 1, max_retries: int = RAY_MAX_RETRIES,
                 trainer: Callable[[TrainConfig], dict] | None = None, log=None):
        if not (isinstance(cpus_per_run, (int, float)) and math.isfinite(cpus_per_run) and cpus_per_run > 0):
            raise SweepError(f"cpus_per_run={cpus_per_run!r} must be a positive number")
        self.address, self.cpus_per_run, self.max_retries = address or None, cpus_per_run, int(max_retries)
        self.trainer, self.log = trainer, log
        self.nodes: set[str] = set()

    def connect(self):
        """Initialise Ray (once per process) and return the module."""
        try:
            import ray
        except ImportError:
            raise SweepError("the ray executor needs Ray, an extra: pip install -e .[ray] "
                             "(or pip install -r requirements-all.txt, the lock with Ray)") from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SweepError(f"cannot reach the Ray cluster at {self.address or 'a new local Ray'}: {exc}") from exc
        return ray

    def run(self, configs: list[TrainConfig], done: Done) -> None:
        """Submit every run, then call ``done(i, record)`` as each finishes (a run that still
        fails after the retries gets a failed record). Ctrl-C or a lost cluster cancels the
        runs not finished and raises; the finished ones have been passed to ``done``."""
        if not configs:
            return
        ray = self.connect()
        task = ray.remote(_ray_run).options(num_cpus=self.cpus_per_run, max_retries=self.max_retries,
                                            retry_exceptions=True)
        pending = {task.remote(c, self.trainer): i for i, c in enumerate(configs)}
        print(f"ray: {len(pending)} run(s) as tasks on {self._where(ray)}", file=self.log or sys.__stderr__, flush=True)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        record, node = ray.get(ref)
                        self.nodes.add(node)
                    except ray.exceptions.RaySystemError:
                        raise
                    except ray.exceptions.RayError as exc:  # the task raised or its worker died, every try
                        cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause else exc
                        record = failed_record(configs[i], cause if isinstance(cause, BaseException)
                                               else str(cause))
                    done(i, record)
        except BaseException as exc:
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001  (the cluster may be gone)
                    pass
            if isinstance(exc, Exception):  # not Ctrl-C: the cluster is gone
                raise SweepError(f"lost the Ray cluster after {len(configs) - len(pending)} of {len(configs)} "
                                 f"run(s) ({type(exc).__name__}: {exc}); the finished runs are cached, "
                                 "build again to resume") from exc
            raise
        print(f"ray: {len(configs)} run(s) finished on {len(self.nodes)} node(s)",
              file=self.log or sys.__stderr__, flush=True)

    @staticmethod
    def _where(ray) -> str:
        try:
            context = ray.get_runtime_context()
            address = getattr(context, "gcs_address", None) or "this machine"
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            cpus = ray.cluster_resources().get("CPU", 0)
            return f"{address} ({nodes} node(s), {cpus:g} CPU(s))"
        except Exception:  # noqa: BLE001  (only a message)
            return "Ray"



# ----------------------------------------------------------------------------- from the environment
def _workers(value) -> int:
    """``value`` (an int, or text from :data:`WORKERS_ENV`; empty: the machine's default) as a count."""
    text = str(value if value is not None else "").strip()
    if not text:
        return default_workers()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise SweepError(f"{WORKERS_ENV}={text!r} must be a positive integer (worker processes of the local executor)")
    return count


def executor_from_env(environ=None):
    """The executor named by :data:`EXECUTOR_ENV` (default ``local``) and its settings; ``local``
    with more than one worker (:data:`WORKERS_ENV`, default :func:`default_workers`)
    is this process's shared :func:`pool`."""
    environ = os.environ if environ is None else environ
    name = environ.get(EXECUTOR_ENV, "").strip() or "local"
    if name not in EXECUTORS:
        raise SweepError(f"{EXECUTOR_ENV}={name!r}: choose one of {', '.join(EXECUTORS)}")
    if name == "local":
        count = _workers(environ.get(WORKERS_ENV))
        return LocalExecutor() if count == 1 else pool(count)
    cpus = environ.get(RAY_CPUS_ENV, "").strip() or "1"
    try:
        cpus_per_run = float(cpus)
    except ValueError:
        raise SweepError(f"{RAY_CPUS_ENV}={cpus!r} must be a positive number") from None
    return RayExecutor(environ.get(RAY_ADDRESS_ENV, "").strip() or None, cpus_per_run)


def executor_env(name: str = "local", address: str | None = None, cpus_per_run: float = 1,
                 workers: int | None = None) -> dict[str, str]:
    """The environment that makes :func:`executor_from_env` return this executor (``workers``
    None: :data:`WORKERS_ENV` as this process has it, else the machine's default)."""
    if name not in EXECUTORS:
        raise SweepError(f"executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    RayExecutor(address, cpus_per_run)  # checks the settings
    count = _workers(os.environ.get(WORKERS_ENV) if workers is None else workers)
    return {EXECUTOR_ENV: name, WORKERS_ENV: str(count), RAY_ADDRESS_ENV: address or "",
            RAY_CPUS_ENV: f"{cpus_per_run:g}"}


