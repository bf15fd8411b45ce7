"""Test-session settings."""

import os

# scikit-learn's array API estimator checks run only with SciPy's array API
# support on, which must be set before SciPy is imported
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


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
