"""EM against gradient training (L-BFGS, Adam) and online partial_fit.

Run from the repository root::

    python benchmarks/bench_gradient.py           # n=1000 and 10000
    python benchmarks/bench_gradient.py --n 2000

For each n, on data from a known mixture
(``make_moe_regression(n_samples=n, n_experts=3, random_state=0)`` and
``make_moe_classification(n_samples=n, n_experts=2, n_classes=3,
random_state=0)``), every method starts from the same k-means start
(``random_state=0``; EM and L-BFGS with ``tol=1e-8``, ``max_iter=1000``, Adam
with its defaults), and the table gives
wall seconds, iterations (EM iterations, L-BFGS iterations, Adam epochs,
partial_fit batches), the final training log-likelihood per sample and that of
the true model. ``partial_fit`` runs 5 epochs of shuffled batches of 200 and
is scored on the whole data. A tiny fit first compiles the numba kernels,
untimed.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression


def _partial_fit(moe, X, y, **kwargs):
    rng = np.random.RandomState(0)
    for _ in range(5):
        order = rng.permutation(len(X))
        for start in range(0, len(X), 200):
            rows = order[start : start + 200]
            moe.partial_fit(X[rows], y[rows], **kwargs)
    return moe.conditional_log_likelihood(X, y).sum()


def _row(task, n, method, moe, X, y, true_ll, **kwargs):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if method == "partial_fit":
            ll = _partial_fit(moe, X, y, **kwargs)
        else:
            ll = moe.fit(X, y).log_likelihood_
    seconds = time.perf_counter() - start
    print(
        f"{task:<14} {n:>7} {method:<12} {seconds:>8.2f} {moe.n_iter_:>6} "
        f"{ll / n:>10.4f} {true_ll / n:>10.4f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    X, y = make_moe_regression(n_samples=50, n_experts=2, random_state=0)
    MixtureOfExpertsRegressor(n_experts=2, training="gradient").fit(X, y)
    X, y = make_moe_classification(n_samples=50, random_state=0)
    MixtureOfExpertsClassifier(n_experts=2, training="gradient").fit(X, y)
    print(
        f"{'task':<14} {'n':>7} {'method':<12} {'seconds':>8} {'iter':>6} "
        f"{'ll/sample':>10} {'true ll/n':>10}"
    )
    tight = {"tol": 1e-8, "max_iter": 1000}
    methods = {
        "em": tight,
        "lbfgs": {"training": "gradient", **tight},
        # its own stopping rule, at the default tol and max_iter epochs
        "adam": {"training": "gradient", "gradient_solver": "adam"},
    }
    for n in args.n:
        X, y, p = make_moe_regression(
            n_samples=n, n_experts=3, random_state=0, return_params=True
        )
        for method, kw in methods.items():
            moe = MixtureOfExpertsRegressor(n_experts=3, random_state=0, **kw)
            _row("regression", n, method, moe, X, y, p.log_likelihood)
        moe = MixtureOfExpertsRegressor(n_experts=3, random_state=0)
        _row("regression", n, "partial_fit", moe, X, y, p.log_likelihood)
        X, y, p = make_moe_classification(
            n_samples=n, n_experts=2, n_classes=3, random_state=0, return_params=True
        )
        for method, kw in methods.items():
            moe = MixtureOfExpertsClassifier(n_experts=2, random_state=0, **kw)
            _row("classification", n, method, moe, X, y, p.log_likelihood)
        moe = MixtureOfExpertsClassifier(n_experts=2, random_state=0)
        _row(
            "classification",
            n,
            "partial_fit",
            moe,
            X,
            y,
            p.log_likelihood,
            classes=np.unique(y),
        )


if __name__ == "__main__":
    main()
