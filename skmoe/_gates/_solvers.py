"""Solvers shared by the gates and the experts the engine owns.

Each takes an objective (a function of a flat parameter vector) and knows
nothing of what it models: Newton's method with a backtracking line search,
for smooth convex objectives with a Hessian that is cheap next to a pass over
the data (the softmax gate, logistic experts, online steps), and L-BFGS-B,
optionally preconditioned by a Cholesky factor of the Hessian at the start.
"""

import numpy as np
from scipy import linalg
from scipy.linalg import lapack
from scipy.optimize import minimize

# Armijo's sufficient-decrease constant and the most step halvings.
ARMIJO = 1e-4
MAX_HALVINGS = 40


def cholesky_solver(H):
    """``solve(b) = H^{-1} b`` through a Cholesky factor of ``H``, or None.

    LAPACK's own routines: scipy's ``cho_factor`` / ``cho_solve`` wrappers
    cost as much as the factorisation of a small matrix. None where ``H`` is
    not positive definite.
    """
    factor, info = lapack.dpotrf(H, lower=True, clean=False)
    if info != 0:
        return None
    return lambda b: lapack.dpotrs(factor, b, lower=True)[0]


def newton_direction(solve, grad, loss, tol):
    """Newton step ``-H^{-1} grad``: ``(step, slope, done)``.

    ``slope = grad @ step`` is minus the squared Newton decrement; ``done``
    when the decrease it predicts (half the squared decrement) is below
    ``tol`` relative to the loss, or the step is not a descent direction.
    """
    step = -solve(grad)
    slope = float(grad @ step)
    # a gain below the loss's round-off cannot pass the Armijo test: at
    # tol=0 the steps would otherwise halve 40 times each, to max_iter
    tol = max(tol, np.finfo(float).eps)
    done = not slope < 0 or -0.5 * slope <= tol * max(1.0, abs(loss))
    return step, slope, done


def newton_minimize(objective, hessian_solver, theta, *, max_iter, tol):
    """Minimise ``objective`` from ``theta`` by Newton's method.

    Each step solves with the Hessian at the current point and backtracks
    until the Armijo condition holds, so the objective never increases. It
    stops when the Newton decrement predicts a decrease below ``tol``
    (relative to the loss; after a step, judged with the previous Hessian
    before a new one is computed), after ``max_iter`` steps, or when no step
    decreases the objective (the minimum to round-off). Written once for
    NumPy and Array API vectors: the callables do the linear algebra.

    Parameters
    ----------
    objective : callable
        ``objective(theta, first)`` returns ``(loss, grad)``; ``first`` is
        True for the evaluation at the starting point only (where a caller
        may hold the values already).
    hessian_solver : callable
        ``hessian_solver(theta)``: a function ``solve(b) = H^{-1} b`` with
        the Hessian at ``theta``, or None where it is not positive definite.
    theta : array of shape (n_parameters,)
    max_iter : int
    tol : float

    Returns
    -------
    theta : array
        The last accepted point.
    n_iter : int
        Steps taken.
    ok : bool
        False when a Hessian was not positive definite at ``theta``: the
        caller finishes from there with another solver.
    """
    loss, grad = objective(theta, True)
    solve = None
    for n_iter in range(max_iter + 1):
        if solve is not None:
            # after a step: stop if even the previous Hessian sees nothing
            # left to gain, before paying for a new one
            if newton_direction(solve, grad, loss, tol)[2] or n_iter == max_iter:
                return theta, n_iter, True
        solve = hessian_solver(theta)
        if solve is None:
            return theta, n_iter, False
        step, slope, done = newton_direction(solve, grad, loss, tol)
        if done or n_iter == max_iter:
            return theta, n_iter, True
        t = 1.0
        for _ in range(MAX_HALVINGS):
            trial = theta + t * step
            trial_loss, trial_grad = objective(trial, False)
            if trial_loss <= loss + ARMIJO * t * slope:
                break
            t *= 0.5
        else:
            return theta, n_iter, True
        theta, loss, grad = trial, trial_loss, trial_grad
    return theta, max_iter, True


def mean_hessian_factor(H, w_sum, alpha, total, n_features):
    """Lower Cholesky factor of a penalised mean Hessian, or None.

    ``H`` is a softmax objective's Hessian summed over rows of total weight
    ``w_sum`` (in the layout of ``gate_hessian``); the objective is the mean
    loss over all rows (total weight ``total``) plus the L2 penalty
    ``alpha`` on the coefficients, not the intercepts. None when the Hessian
    is not finite or not positive definite.
    """
    K1 = H.shape[0] // (n_features + 1)
    H = H / w_sum
    diag = np.arange(n_features * K1)
    H[diag, diag] += alpha / total
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)):
        return None
    ridge = 1e-10 * max(np.trace(H) / H.shape[0], np.finfo(float).tiny)
    H[np.diag_indices_from(H)] += ridge
    try:
        return linalg.cholesky(H, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None


def lbfgs_minimize(objective, theta0, *, max_iter, tol, preconditioner=None):
    """Minimise ``objective`` (returning ``(loss, grad)``) by L-BFGS-B.

    With a lower Cholesky factor ``L`` of the Hessian at ``theta0`` as
    ``preconditioner``, L-BFGS-B runs on ``psi = L^T theta / c``, where the
    Hessian is about the identity, and ``c``, the length of the starting
    gradient there, makes its first trial step (of length one) the Newton
    step. Same objective, same tolerances, same minimum, in a few iterations
    instead of dozens when the problem is badly conditioned.

    Returns
    -------
    theta : ndarray
    n_iter : int
    """
    options = {"maxiter": max_iter, "ftol": tol, "gtol": 1e-10}
    if preconditioner is None:
        result = minimize(
            objective, theta0, jac=True, method="L-BFGS-B", options=options
        )
        return result.x, int(result.nit)
    L = preconditioner

    def to_theta(phi):
        return linalg.solve_triangular(
            L, phi, lower=True, trans="T", check_finite=False
        )

    def in_phi(phi):
        loss, grad = objective(to_theta(phi))
        return loss, linalg.solve_triangular(L, grad, lower=True, check_finite=False)

    phi0 = L.T @ theta0
    loss0, grad0 = in_phi(phi0)
    c = float(np.linalg.norm(grad0))
    if not (np.isfinite(c) and c > 0):
        c = 1.0
    psi0 = phi0 / c

    def in_psi(psi):
        if np.array_equal(psi, psi0):  # L-BFGS-B starts here: known
            return loss0, grad0 * c
        loss, grad = in_phi(psi * c)
        return loss, grad * c

    result = minimize(in_psi, psi0, jac=True, method="L-BFGS-B", options=options)
    if result.nit == 0:
        # not moved: keep theta bit for bit, without the round trip
        return theta0, 0
    return to_theta(result.x * c), int(result.nit)
