"""Memory over a long EM run: resident memory through the iterations.

Run from the repository root::

    python benchmarks/bench_memory.py                      # n=1e6, d=20, K=8, 100 its
    python benchmarks/bench_memory.py --n 100000 --max-iter 300

The data are ``make_moe_regression(n_samples=n, n_features=d, n_experts=K,
random_state=0)``; the model ``MixtureOfExpertsRegressor(n_experts=K, tol=0,
max_iter=--max-iter, random_state=0)``, so EM runs every iteration. A
thread samples the resident set size (``/proc/self/statm``, Linux) every
10 ms during the fit; the samples are mapped to iterations by time (the
fit's own timing of its start and its iterations, ``_fit_counts``, with
iterations of equal length). The table shows it at a few iterations, the
process's peak (``resource.getrusage``), and the growth between the end of
the fifth iteration (the first ones allocate the buffers the later ones
reuse) and the last: a flat run grows by about nothing, a leak by the same
amount every iteration.
"""

import argparse
import os
import resource
import threading
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
    samples = []  # (seconds since the fit began, RSS MiB)
    done = threading.Event()

    def sample(t0):
        while not done.is_set():
            samples.append((time.perf_counter() - t0, rss_mib()))
            time.sleep(0.01)

    start = time.perf_counter()
    sampler = threading.Thread(target=sample, args=(start,), daemon=True)
    sampler.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - start
    counts = est._fit_counts
    # iteration i ends at start_s + i * (iterations_s / n_iter), give or take
    # the validation before the start
    at = np.array([t for t, _ in samples])
    rss = np.array([m for _, m in samples])
    lead = seconds - counts["start_s"] - counts["iterations_s"]
    ends = (
        lead
        + counts["start_s"]
        + counts["iterations_s"] * (np.arange(1, est.n_iter_ + 1) / est.n_iter_)
    )
    trace = [rss[max(0, np.searchsorted(at, end) - 1)] for end in ends]
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
    # the first iterations allocate the buffers every later one reuses: a
    # leak shows as growth after them
    settled = min(5, len(trace))
    growth = trace[-1] - trace[settled - 1]
    per_iter = growth / max(1, len(trace) - settled)
    print(
        f"peak RSS {peak_mib():.0f} MiB; growth from iteration {settled} to "
        f"{len(trace)}: {growth:+.1f} MiB ({per_iter:+.3f} MiB per iteration); "
        f"log-likelihood {est.log_likelihood_:.2f}"
    )


if __name__ == "__main__":
    main()
