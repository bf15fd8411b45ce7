"""EM variants and gates on known-mixture data: log-likelihood, iterations, time.

Rows: soft EM, CEM and SEM on flat mixtures (``make_moe_regression``,
K = 3, 2000 rows, 5 seeds), and the linear, MLP and hierarchical gates on
two-level trees (``make_hme_regression``, 4 leaves, 2000 rows, 5 seeds).
Columns: the mean gap to the true model's log-likelihood per row (positive:
the fit is above the truth, by its excess parameters), how many fits came
within 0.02 nats per row of the truth or above it, mean EM iterations and
mean CPU seconds per fit (process time, one BLAS thread).

    OMP_NUM_THREADS=1 python benchmarks/bench_variants.py
"""

import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_hme_regression, make_moe_regression

warnings.simplefilter("ignore")
SEEDS = range(5)
N = 2000

CASES = [
    ("flat K=3", make_moe_regression, dict(n_experts=3), dict(training="em")),
    ("flat K=3", make_moe_regression, dict(n_experts=3), dict(training="cem")),
    ("flat K=3", make_moe_regression, dict(n_experts=3), dict(training="sem")),
    ("tree 2x2", make_hme_regression, {}, dict(gate="linear")),
    ("tree 2x2", make_hme_regression, {}, dict(gate="mlp")),
    ("tree 2x2", make_hme_regression, {}, dict(gate="hierarchical")),
    ("tree 2x2", make_hme_regression, {}, dict(gate="hierarchical", n_init=4)),
]

print(
    f"{'data':10} {'estimator':36} {'gap/row':>8} {'near':>5} {'iter':>6} {'cpu s':>7}"
)
with threadpool_limits(limits=1, user_api="blas"):
    for data, make, data_kw, est_kw in CASES:
        gaps, iters, secs = [], [], []
        for seed in SEEDS:
            X, y, truth = make(
                n_samples=N, return_params=True, random_state=seed, **data_kw
            )
            K = truth.coef.shape[0]
            est = MixtureOfExpertsRegressor(n_experts=K, random_state=0, **est_kw)
            start = time.process_time()
            est.fit(X, y)
            secs.append(time.process_time() - start)
            gaps.append((est.log_likelihood_ - truth.log_likelihood) / N)
            iters.append(est.n_iter_)
        gaps = np.array(gaps)
        name = ", ".join(f"{k}={v!r}" for k, v in est_kw.items())
        print(
            f"{data:10} {name:36} {gaps.mean():8.4f} "
            f"{np.sum(gaps > -0.02):2d}/{len(gaps)} {np.mean(iters):6.1f} "
            f"{np.mean(secs):7.2f}"
        )
