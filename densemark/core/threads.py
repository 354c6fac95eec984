"""One compute thread per worker: native thread pools (BLAS, OpenMP, OpenCV) limited to one.

A pool of ``N`` worker processes on ``N`` cores already uses every core; a worker whose BLAS or
OpenCV starts threads of its own only oversubscribes them. OpenBLAS's idle threads also spin
while they wait for the next call, so a worker with a two-thread BLAS burns close to twice the
CPU for the same rows (measured on a build chunk: 3.33 against 1.73 CPU-ms per row, the same
wall time). Environment variables such as ``OPENBLAS_NUM_THREADS`` cannot fix this after the
library is loaded, and a forked worker inherits its parent's setting; these helpers set the
limit at run time (``threadpoolctl`` for BLAS and OpenMP, ``cv2.setNumThreads`` for OpenCV).

The limits change how much work runs in parallel, never what is computed: a build's bytes are
the same at any thread count (the dispatch test runs every stage with one BLAS thread).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def limit_this_process() -> None:
    """For a pool worker, for good: BLAS/OpenMP and OpenCV at one thread each."""
    import cv2
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if cv2.getNumThreads() != 1:  # a forked worker's parent set it already: never reconfigure
        cv2.setNumThreads(1)  # the pool a child inherited (its threads did not survive the fork)


@contextmanager
def one_thread() -> Iterator[None]:
    """BLAS/OpenMP and OpenCV at one thread each within the block, restored after (for a task
    that runs in a worker someone else started, such as a Dask worker)."""
    import cv2
    from threadpoolctl import threadpool_limits

    n = cv2.getNumThreads()
    with threadpool_limits(1):
        cv2.setNumThreads(1)
        try:
            yield
        finally:
            cv2.setNumThreads(n)


def blas_threads() -> int:
    """The largest thread count of the BLAS/OpenMP libraries loaded in this process (1 when
    none is loaded)."""
    from threadpoolctl import threadpool_info

    return max((i["num_threads"] for i in threadpool_info()), default=1)
