"""Where the jobs of a trial run: this process, local worker processes, or a Dask cluster.

Every backend takes the same jobs and a module-level function to run each one, and yields
each job's outcome as it completes (``as_completed``), so the trial, its store and its
progress bar are the same code for all of them. A job that raises is an outcome with its
error, not an exception: the other jobs go on. Placement, retries after a lost worker and
worker restarts are Dask's (``distributed``); this module only submits and collects.
"""

from __future__ import annotations

import logging
import multiprocessing
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

J = TypeVar("J")
R = TypeVar("R")

DASK_MISSING = "Dask is not installed: pip install 'neurostim[dask]'"


class DaskUnavailable(RuntimeError):
    """The Dask backend was asked for but ``distributed`` is not installed."""


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """One finished job: its position in the submitted list and its result or error."""

    index: int
    result: R | None
    error: str | None = None  # "ExceptionType: message" when the job failed
    error_type: str | None = None


def attempt(run: Callable[[J], R], job: J) -> tuple[R | None, str | None, str | None]:
    """``run(job)``, with a failure returned as (None, message, type name) instead of raised.

    Module level, so that worker processes and Dask workers can unpickle it.
    """
    try:
        return run(job), None, None
    except Exception as exc:
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return None, detail, type(exc).__name__


class Backend(Protocol):
    """Runs jobs; ``slots`` is how many run at once."""

    name: str

    @property
    def slots(self) -> int: ...

    def run(self, run: Callable[[J], R], jobs: Sequence[J]) -> Iterator[Outcome[R]]: ...


def _outcome(index: int, value: tuple[Any, str | None, str | None]) -> Outcome[Any]:
    result, error, error_type = value
    return Outcome(index, result, error, error_type)


class InProcess:
    """One job after the other in this process."""

    name = "in-process"
    slots = 1

    def run(self, run: Callable[[J], R], jobs: Sequence[J]) -> Iterator[Outcome[R]]:
        for index, job in enumerate(jobs):
            yield _outcome(index, attempt(run, job))


class LocalProcesses:
    """``workers`` spawned processes on this machine (the default backend)."""

    name = "local processes"

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)

    @property
    def slots(self) -> int:
        return self.workers

    def run(self, run: Callable[[J], R], jobs: Sequence[J]) -> Iterator[Outcome[R]]:
        # spawn: workers start clean (no inherited threads or numba state from the parent).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=context) as pool:
            futures = {pool.submit(attempt, run, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    yield _outcome(index, future.result())
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                    yield Outcome(index, None, f"worker process lost: {exc}", "WorkerLost")


class DaskCluster:
    """A Dask distributed cluster: the scheduler at ``address``, or (None) a LocalCluster of
    ``workers`` single-threaded worker processes started and stopped here."""

    name = "dask"

    def __init__(self, address: str | None, workers: int) -> None:
        try:
            import distributed
        except ImportError as exc:
            raise DaskUnavailable(DASK_MISSING) from exc
        self._distributed = distributed
        self._address = address
        self._workers = max(1, workers)
        self._cluster: Any = None
        self._client: Any = None
        self._log_level: int | None = None  # the `distributed` logger's, while we quiet it

    def __enter__(self) -> DaskCluster:
        distributed = self._distributed
        if self._address is None:
            # Our own cluster's scheduler and nannies live in this process and log a dozen
            # INFO lines per worker as they start and stop (its silence_logs covers only
            # part of it): the trial's output is its progress bar and results.
            dask_log = logging.getLogger("distributed")
            self._log_level = dask_log.level
            dask_log.setLevel(logging.WARNING)
            self._cluster = distributed.LocalCluster(
                n_workers=self._workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.WARNING,
            )
            self._client = distributed.Client(self._cluster)
        else:
            self._client = distributed.Client(self._address)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            if self._log_level is not None:
                logging.getLogger("distributed").setLevel(self._log_level)
            self._client = self._cluster = self._log_level = None

    @property
    def slots(self) -> int:
        if self._client is None:
            return self._workers
        return max(1, sum(self._client.nthreads().values()))

    def run(self, run: Callable[[J], R], jobs: Sequence[J]) -> Iterator[Outcome[R]]:
        if self._client is None:
            raise RuntimeError("DaskCluster.run outside its `with` block")
        batch = uuid.uuid4().hex  # keys unique across runs on a shared scheduler
        futures = [
            self._client.submit(attempt, run, job, pure=False, key=f"trial-job-{batch}-{i}")
            for i, job in enumerate(jobs)
        ]
        index_of = {future.key: i for i, future in enumerate(futures)}
        for future in self._distributed.as_completed(futures):
            index = index_of[future.key]
            try:
                yield _outcome(index, future.result())
            except Exception as exc:  # the cluster gave up on the task (e.g. workers lost)
                yield Outcome(index, None, f"{type(exc).__name__}: {exc}", type(exc).__name__)
            future.release()
