"""Softmax gating networks fitted on soft targets (the gate's M-step)."""

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._kernels import gate_loss, log_softmax


class SoftmaxGate(BaseEstimator):
    """Linear softmax (multinomial logit) gate over the experts.

    ``g(x) = softmax(x @ coef_ + intercept_)``. The first expert is the
    reference category (its column of ``coef_`` and ``intercept_`` is zero), as
    in ``nnet::multinom`` and flexmix's ``FLXPmultinom``, so the parameters are
    identifiable. The gate is fitted on soft targets (the responsibilities)
    by L-BFGS on the weighted cross-entropy plus an L2 penalty.

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
        std = np.sqrt(w @ (X - mean) ** 2)
        std[std < 1e-12 * (1.0 + np.abs(mean))] = 1.0
        self._mean, self._scale = mean, std

    def _logits(self, Xs, theta):
        n = Xs.shape[0]
        logits = np.zeros((n, theta.shape[1] + 1))
        logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
        return logits

    def _set_public(self):
        W, b = self._theta[:-1], self._theta[-1]
        d, K1 = W.shape
        self.coef_ = np.zeros((d, K1 + 1))
        self.coef_[:, 1:] = W / self._scale[:, None]
        self.intercept_ = np.zeros(K1 + 1)
        self.intercept_[1:] = b - (self._mean / self._scale) @ W

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
        Xs = (X - self._mean) / self._scale
        total = sw.sum()
        alpha = float(self.alpha)

        def objective(flat):
            theta = flat.reshape(d + 1, K - 1)
            loss, dlogits = gate_loss(self._logits(Xs, theta), resp, sw)
            W = theta[:-1]
            grad = np.empty_like(theta)
            grad[:-1] = Xs.T @ dlogits[:, 1:] + alpha * W
            grad[-1] = dlogits[:, 1:].sum(axis=0)
            loss += 0.5 * alpha * np.sum(W * W)
            # mean scale keeps L-BFGS tolerances independent of n
            return loss / total, grad.ravel() / total

        if K > 1:
            result = minimize(
                objective,
                self._theta.ravel(),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": 1e-10},
            )
            self._theta = result.x.reshape(d + 1, K - 1)
            self.n_iter_ = int(result.nit)
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
        return log_softmax(X @ self.coef_ + self.intercept_)

    def predict_proba(self, X):
        """Gate probabilities, shape (n_samples, n_experts)."""
        return np.exp(self.predict_log_proba(X))
