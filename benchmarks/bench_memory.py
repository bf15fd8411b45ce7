"""Memory over a long EM run: resident memory after every iteration.

Run from the repository root::

    python benchmarks/bench_memory.py                      # n=1e6, d=20, K=8, 100 its
    python benchmarks/bench_memory.py --n 100000 --max-iter 300

The data are ``make_moe_regression(n_samples=n, n_features=d, n_experts=K,
random_state=0)``; the model ``MixtureOfExpertsRegressor(n_experts=K, tol=0,
max_iter=--max-iter, random_state=0)``, so EM runs every iteration. The
resident set size (``/proc/self/statm``, Linux) is read after each E-step;
the table shows it at a few iterations, the process's peak
(``resource.getrusage``), and the growth between the end of the first
iteration and the last: a flat run grows by about nothing, a leak by the same
amount every iteration.
"""

import argparse
import os
import resource
import time
import warnings

import numpy as np


def rss_mib():
    """Current resident set size in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--max-iter", type=int, default=100)
    args = parser.parse_args(argv)

    from sklearn.exceptions import ConvergenceWarning

    from skmoe import MixtureOfExpertsRegressor
    from skmoe.datasets import make_moe_regression

    # compile (or load) the kernels before measuring
    Xs, ys = make_moe_regression(n_samples=500, n_experts=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MixtureOfExpertsRegressor(n_experts=2, max_iter=3, tol=0).fit(Xs, ys)

    X, y = make_moe_regression(
        n_samples=args.n, n_features=args.d, n_experts=args.K, random_state=0
    )
    data_mib = (X.nbytes + y.nbytes) / 2**20
    before = rss_mib()
    est = MixtureOfExpertsRegressor(
        n_experts=args.K, tol=0, max_iter=args.max_iter, random_state=0
    )
    trace = []
    e_step = est._e_step

    def recording_e_step(*a, **k):
        out = e_step(*a, **k)
        trace.append(rss_mib())
        return out

    # an instance attribute shadows the method: RSS after each iteration
    est._e_step = recording_e_step
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    seconds = time.perf_counter() - start
    del est._e_step

    trace = np.asarray(trace)
    print(
        f"n={args.n} d={args.d} K={args.K} iterations={est.n_iter_} "
        f"fit {seconds:.1f} s, data {data_mib:.0f} MiB, "
        f"RSS before fit {before:.0f} MiB"
    )
    print(f"{'iteration':>10} {'RSS MiB':>10}")
    marks = sorted({1, 2, 5, 10, len(trace) // 2, len(trace)} - {0})
    for i in marks:
        if i <= len(trace):
            print(f"{i:>10d} {trace[i - 1]:>10.1f}")
    growth = trace[-1] - trace[0]
    per_iter = growth / max(1, len(trace) - 1)
    print(
        f"peak RSS {peak_mib():.0f} MiB; growth from iteration 1 to "
        f"{len(trace)}: {growth:+.1f} MiB ({per_iter:+.3f} MiB per iteration); "
        f"log-likelihood {est.log_likelihood_:.2f}"
    )


if __name__ == "__main__":
    main()
