"""Softmax gating networks fitted on soft targets (the gate's M-step)."""

import numpy as np
from scipy import linalg
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._kernels import (
    NUMBA_AVAILABLE,
    gate_loss,
    gate_objective,
    log_softmax,
    single_threaded_blas,
)

# The L-BFGS preconditioner (the Hessian at the starting point) is estimated
# on an evenly strided subsample of the rows: about 2 n / (free parameters)
# of them, so that it costs about two objective evaluations, within these
# bounds. Fewer rows give a rougher preconditioner and a few more iterations.
_PRECONDITIONER_ROWS = (2_000, 20_000)

# A cold fit (from zero) with at most this many input entries evaluates the
# objective on the whole standardised array, as versions before the fused
# kernel did, so its result is the same to the last bit: a gate that
# saturates (no penalty, separable targets) has no minimum, and where
# L-BFGS stops along that unbounded path depends on every rounding. Above
# it (and for every warm fit) the fused kernel, faster at every size.
_PLAIN_COLD_FIT_ENTRIES = 1 << 20


def gate_hessian_sum(X, sample_weight, mean, scale, theta):
    """Summed cross-entropy Hessian of the gate in its free parameters.

    ``sum_i w_i (diag(g_i) - g_i g_i^T) (x) z_i z_i^T`` with ``z_i = (xs_i,
    1)``, ``xs_i = (x_i - mean) / scale`` and ``g_i`` the gate probabilities
    of experts 1.. at ``theta``; it does not depend on the targets. A sum over
    rows, so blocks of rows (chunks of a Dask array) can be added up.
    Returns an array of shape (p * K1, p * K1), ``p = n_features + 1``,
    ``K1 = n_experts - 1``, indexed ``(feature, expert)``.
    """
    m, d = X.shape
    K1 = theta.shape[1]
    p = d + 1
    Z = np.empty((m, p))
    Z[:, :d] = (X - mean) / scale
    Z[:, d] = 1.0
    logits = np.zeros((m, K1 + 1))
    logits[:, 1:] = Z @ theta
    g = np.exp(log_softmax(logits))[:, 1:]
    # H = sum_i w_i diag(g_i) (x) z_i z_i^T - (g_i (x) z_i)(g_i (x) z_i)^T,
    # each term as B^T B (a symmetric product) with sqrt weights
    root_w = np.sqrt(sample_weight)
    B = (Z[:, :, None] * (g * root_w[:, None])[:, None, :]).reshape(m, p * K1)
    H = -(B.T @ B)
    blocks = H.reshape(p, K1, p, K1)
    for k in range(K1):
        Zk = Z * (root_w * np.sqrt(g[:, k]))[:, None]
        blocks[:, k, :, k] += Zk.T @ Zk
    return H


def mean_hessian_factor(H, w_sum, alpha, total, n_features):
    """Lower Cholesky factor of the mean objective's Hessian, or None.

    ``H`` is a :func:`gate_hessian_sum` over rows of total weight ``w_sum``;
    the objective is the mean loss over all rows (total weight ``total``)
    plus the L2 penalty ``alpha`` on the coefficients. None when the Hessian
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


class SoftmaxGate(BaseEstimator):
    """Linear softmax (multinomial logit) gate over the experts.

    ``g(x) = softmax(x @ coef_ + intercept_)``. The first expert is the
    reference category (its column of ``coef_`` and ``intercept_`` is zero), as
    in ``nnet::multinom`` and flexmix's ``FLXPmultinom``, so the parameters are
    identifiable. The gate is fitted on soft targets (the responsibilities)
    by L-BFGS on the weighted cross-entropy plus an L2 penalty, preconditioned
    by the Hessian at the starting point.

    Parameters
    ----------
    alpha : float, default=1e-3
        L2 penalty on the coefficients of the standardised inputs (not on the
        intercepts), added to the summed weighted cross-entropy; the same
        scale as ``1 / C`` in :class:`~sklearn.linear_model.LogisticRegression`.
    max_iter : int, default=100
        Most L-BFGS iterations per fit.
    tol : float, default=1e-8
        L-BFGS tolerance on the relative decrease of the mean loss.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_experts)
        Gate coefficients in the scale of the inputs; column 0 is zero.
    intercept_ : ndarray of shape (n_experts,)
        Gate intercepts; entry 0 is zero.
    n_iter_ : int
        L-BFGS iterations of the last fit.
    """

    def __init__(self, alpha=1e-3, max_iter=100, tol=1e-8):
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol

    # The optimiser works on standardised inputs (far better conditioned);
    # ``_theta`` holds the free block (n_features + 1, n_experts - 1) there.

    def _init_scaler(self, X, sample_weight):
        w = sample_weight / sample_weight.sum()
        mean = w @ X
        self._set_scaler(mean, np.sqrt(w @ (X - mean) ** 2))

    def _set_scaler(self, mean, std):
        """Standardise by (mean, std); a column without spread is left unscaled."""
        std = std.copy()
        std[std < 1e-12 * (1.0 + np.abs(mean))] = 1.0
        self._mean, self._scale = mean, std

    def _preconditioner(self, X, sw, alpha, total):
        """Lower Cholesky factor of the objective's Hessian at ``_theta``.

        L-BFGS then runs on ``phi = L^T theta``, where the objective's Hessian
        is close to the identity: the same objective and minimum, reached in a
        few iterations instead of dozens (a sharp gate makes the Hessian in
        ``theta`` badly conditioned). The Hessian (see :func:`gate_hessian_sum`)
        is estimated here on an evenly strided subsample of the rows (see
        ``_PRECONDITIONER_ROWS``; a preconditioner need not be exact).
        Returns None when it is not positive definite.
        """
        n, d = X.shape
        K1 = self._theta.shape[1]
        p = d + 1
        low, high = _PRECONDITIONER_ROWS
        n_rows = max(low, min(high, 2 * n // (p * K1)))
        rows = slice(None, None, max(1, n // n_rows))
        w = sw[rows]
        w_sum = w.sum()
        if not w_sum > 0:
            return None
        H = gate_hessian_sum(X[rows], w, self._mean, self._scale, self._theta)
        return mean_hessian_factor(H, w_sum, alpha, total, d)

    def _set_public(self):
        W, b = self._theta[:-1], self._theta[-1]
        d, K1 = W.shape
        self.coef_ = np.zeros((d, K1 + 1))
        self.coef_[:, 1:] = W / self._scale[:, None]
        self.intercept_ = np.zeros(K1 + 1)
        self.intercept_[1:] = b - (self._mean / self._scale) @ W

    def _lbfgs(self, objective, L):
        """Minimise ``objective`` from ``_theta``; return (flat theta, n_iter).

        With a preconditioner ``L`` (warm starts, where EM refits the gate at
        every iteration), L-BFGS-B runs on ``psi = L^T theta / c``: ``L``,
        from :meth:`_preconditioner`, makes the Hessian about the identity, and
        ``c``, the length of the starting gradient in ``L^T theta``, makes
        L-BFGS-B's first trial step (a step of length one) the Newton step,
        which is then taken at the first evaluation instead of after a line
        search. Same objective, same tolerances, same minimum. A cold start
        (from zero) runs L-BFGS-B on ``theta`` itself, as it always did.
        """
        options = {"maxiter": self.max_iter, "ftol": self.tol, "gtol": 1e-10}
        theta0 = self._theta.ravel()
        if L is None:
            result = minimize(
                objective, theta0, jac=True, method="L-BFGS-B", options=options
            )
            return result.x, int(result.nit)

        def to_theta(phi):
            return linalg.solve_triangular(
                L, phi, lower=True, trans="T", check_finite=False
            )

        def in_phi(phi):
            loss, grad = objective(to_theta(phi))
            grad = linalg.solve_triangular(L, grad, lower=True, check_finite=False)
            return loss, grad

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

    def fit(self, X, resp, sample_weight=None, warm_start=False):
        """Fit the gate on soft targets.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        resp : ndarray of shape (n_samples, n_experts)
            Target probabilities per row (rows sum to one).
        sample_weight : ndarray of shape (n_samples,), default=None
        warm_start : bool, default=False
            Start from the current parameters when they fit the shapes.

        Returns
        -------
        self : SoftmaxGate
        """
        X = np.asarray(X, dtype=np.float64)
        resp = np.asarray(resp, dtype=np.float64)
        n, d = X.shape
        K = resp.shape[1]
        sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        warm = (
            warm_start
            and hasattr(self, "_theta")
            and self._theta.shape == (d + 1, K - 1)
        )
        if not warm:
            self._init_scaler(X, sw)
            self._theta = np.zeros((d + 1, K - 1))
        total = sw.sum()
        alpha = float(self.alpha)
        if NUMBA_AVAILABLE and (warm or n * d > _PLAIN_COLD_FIT_ENTRIES):

            def objective(flat):
                # the kernel standardises each row on the fly: no copy of X
                theta = flat.reshape(d + 1, K - 1)
                loss, grad = gate_objective(X, self._mean, self._scale, theta, resp, sw)
                W = theta[:-1]
                grad[:-1] += alpha * W
                loss += 0.5 * alpha * np.sum(W * W)
                # mean scale keeps L-BFGS tolerances independent of n
                return loss / total, grad.ravel() / total

        else:
            Xs = (X - self._mean) / self._scale

            def objective(flat):
                theta = flat.reshape(d + 1, K - 1)
                logits = np.zeros((n, K))
                logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
                loss, dlogits = gate_loss(logits, resp, sw)
                W = theta[:-1]
                grad = np.empty_like(theta)
                grad[:-1] = Xs.T @ dlogits[:, 1:] + alpha * W
                grad[-1] = dlogits[:, 1:].sum(axis=0)
                loss += 0.5 * alpha * np.sum(W * W)
                return loss / total, grad.ravel() / total

        if K > 1:
            # the objective parallelises itself; L-BFGS's own small BLAS calls
            # only lose time to threads
            with single_threaded_blas():
                L = self._preconditioner(X, sw, alpha, total) if warm else None
                flat, self.n_iter_ = self._lbfgs(objective, L)
            self._theta = flat.reshape(d + 1, K - 1)
        else:
            self.n_iter_ = 0
        self._set_public()
        return self

    def penalty(self):
        """The L2 penalty ``alpha / 2 * ||W||^2`` at the current parameters."""
        check_is_fitted(self)
        W = self._theta[:-1]
        return 0.5 * float(self.alpha) * float(np.sum(W * W))

    def predict_log_proba(self, X):
        """Log gate probabilities, shape (n_samples, n_experts)."""
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        # one thread: threaded BLAS idles spinning while numba's threads work
        with single_threaded_blas():
            logits = X @ self.coef_
        logits += self.intercept_
        return log_softmax(logits)

    def predict_proba(self, X):
        """Gate probabilities, shape (n_samples, n_experts)."""
        return np.exp(self.predict_log_proba(X))
