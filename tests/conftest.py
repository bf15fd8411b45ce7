"""Test-session settings."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_pools():
    # The fits here are small: with several BLAS threads on a busy 2-core
    # machine, thread hand-offs cost more than the products they split
    # (a fit measured 7x slower), so the suite runs BLAS on one thread; and
    # OpenMP too: HistGradientBoosting experts stalled 10-26 s per fit with
    # OpenMP threads on a loaded machine, 0.05 s on one thread.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        threadpool_limits(limits=1, user_api="openmp"),
    ):
        yield
