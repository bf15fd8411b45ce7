"""Benchmark of EM streamed over the chunks of a Dask array, against in memory.

Run from the repository root::

    python benchmarks/bench_dask.py                  # n in {2e4, 2e5}, d=5, K=3
    python benchmarks/bench_dask.py --n 100000 --chunk-rows 10000 50000
    python benchmarks/bench_dask.py --classifier     # the classifier, 3 classes

For every size the data are ``make_moe_regression(n_samples=n, n_features=d,
n_experts=K, noise=0.3, random_state=0)`` and the model
``MixtureOfExpertsRegressor(n_experts=K, random_state=0)``, fitted in memory
on the NumPy arrays and streamed over ``dask.array.from_array`` chunks of
``--chunk-rows`` rows (Dask's threaded scheduler). A tiny fit first loads the
numba kernels. The table gives wall seconds, EM iterations, passes over the
data during EM (as the fit counts them, ``_fit_counts["passes"]``: the
start's, then one per iteration, whose pass is both the E-step and the test
of the gate's Newton step, and one more per halving of that step; the two
set-up passes, moments and chunk weights, and the subsample read for the
start are not counted), passes per iteration, the final log-likelihood and its
difference from the in-memory fit's (up to 10,000 rows the two are the same
fit; above, the start and the gate's Hessian come from a subsample).

With ``--classifier`` the data are ``make_moe_classification(n_samples=n,
n_features=d, n_experts=K, n_classes=3, random_state=0)`` and the model
``MixtureOfExpertsClassifier(n_experts=K, random_state=0)`` (LogisticRegression
experts): its passes also count the last one, for the gate's mean
probabilities; its first M-step fits the experts on the subsample too.
"""

import argparse
import os
import time
import warnings

import dask.array as da

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression


def _data(classifier, n, d, K):
    if classifier:
        return make_moe_classification(
            n_samples=n, n_features=d, n_experts=K, n_classes=3, random_state=0
        )
    return make_moe_regression(
        n_samples=n, n_features=d, n_experts=K, noise=0.3, random_state=0
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--d", type=int, default=5)
    parser.add_argument("--K", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[25_000])
    parser.add_argument("--classifier", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    Model = MixtureOfExpertsClassifier if args.classifier else MixtureOfExpertsRegressor
    X, y = _data(args.classifier, 200, 2, 2)
    Model(n_experts=2, max_iter=3).fit(X, y)
    Model(n_experts=2, max_iter=3).fit(
        da.from_array(X, chunks=100), da.from_array(y, chunks=100)
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    header = (
        f"{'n':>8} {'fit':>18} {'seconds':>8} {'EM iter':>7} {'passes':>6} "
        f"{'per it':>6} {'log-likelihood':>16} {'diff':>10}"
    )
    print(header)
    print("-" * len(header))
    for n in args.n:
        X, y = _data(args.classifier, n, args.d, args.K)
        model = Model(n_experts=args.K, random_state=0)
        start = time.perf_counter()
        ref = model.fit(X, y)
        seconds = time.perf_counter() - start
        ll_ref = ref.log_likelihood_
        print(
            f"{n:>8} {'in memory':>18} {seconds:>8.2f} {ref.n_iter_:>7} {'':>6} "
            f"{'':>6} {ll_ref:>16.4f} {'':>10}"
        )
        for rows in args.chunk_rows:
            dX = da.from_array(X, chunks=(rows, -1))
            dy = da.from_array(y, chunks=rows)
            model = Model(n_experts=args.K, random_state=0)
            start = time.perf_counter()
            fit = model.fit(dX, dy)
            seconds = time.perf_counter() - start
            label = f"chunks of {rows}"
            passes = fit._fit_counts["passes"]
            print(
                f"{n:>8} {label:>18} {seconds:>8.2f} {fit.n_iter_:>7} "
                f"{passes:>6} {passes / fit.n_iter_:>6.2f} "
                f"{fit.log_likelihood_:>16.4f} {fit.log_likelihood_ - ll_ref:>10.2e}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
