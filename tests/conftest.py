"""Test-session settings."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    # The fits here are small: with several BLAS threads on a busy 2-core
    # machine, thread hand-offs cost more than the products they split
    # (a fit measured 7x slower), so the suite runs BLAS on one thread.
    with threadpool_limits(limits=1, user_api="blas"):
        yield
