"""Fitting experts on responsibility-weighted data (the experts' M-step)."""

import warnings

import numpy as np
from joblib import Parallel, delayed
from scipy import linalg
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import has_fit_parameter


def sample_weight_key(estimator):
    """The fit-parameter name through which ``estimator`` takes sample weights.

    A :class:`~sklearn.pipeline.Pipeline` routes them to its final step as
    ``<step>__sample_weight``. Returns None when the estimator has no way to
    take them.
    """
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        if last is None or last == "passthrough":
            return None
        return f"{name}__sample_weight" if sample_weight_key(last) else None
    return "sample_weight" if has_fit_parameter(estimator, "sample_weight") else None


def check_experts(names, estimators, *, need_proba):
    """Raise a clear error for an expert the EM M-step cannot use."""
    for name, est in zip(names, estimators, strict=True):
        if not hasattr(est, "fit"):
            raise TypeError(
                f"Expert {name!r} is {est!r}, which has no fit method; experts "
                "must be scikit-learn estimators."
            )
        if sample_weight_key(est) is None:
            raise ValueError(
                f"Expert {name!r} ({type(est).__name__}) does not accept "
                "sample_weight in fit. The EM M-step weights each row by its "
                "responsibility, so every expert must support sample_weight "
                "(e.g. DecisionTreeRegressor, HistGradientBoostingRegressor, "
                "LogisticRegression, SVC, Ridge)."
            )
        if need_proba and not hasattr(est, "predict_proba"):
            raise ValueError(
                f"Expert {name!r} ({type(est).__name__}) has no predict_proba; "
                "classification experts must give class probabilities (for SVC, "
                "set probability=True)."
            )


def _fast_linear_alpha(estimator):
    """Ridge penalty for the closed-form path, or None where it does not apply.

    The closed form reproduces LinearRegression and Ridge (scalar alpha, the
    direct solvers) exactly; anything else goes through the estimator's fit.
    """
    if type(estimator) is LinearRegression:
        if estimator.positive:
            return None
        return 0.0
    if type(estimator) is Ridge:
        if estimator.positive or estimator.solver not in ("auto", "cholesky"):
            return None
        if not np.isscalar(estimator.alpha):
            return None
        return float(estimator.alpha)
    return None


def _fit_linear_closed_form(template, alpha, X0, x_shift, Y, w, y_is_1d):
    """Weighted least squares (plus ridge) through the normal equations.

    Hand-written because LinearRegression solves an SVD of the whole weighted
    design per call, several times the work of one X^T W X product; the
    result equals LinearRegression/Ridge with ``sample_weight=w``.
    ``X0 = X - x_shift`` is centred once per M-step for stability; each
    expert then subtracts its weighted mean through a rank-one correction.
    """
    fit_intercept = template.fit_intercept
    w_sum = w.sum()
    Xw = X0 * w[:, None]
    A = Xw.T @ X0
    B = Xw.T @ Y
    if fit_intercept:
        dx = Xw.sum(axis=0) / w_sum
        dy = (w @ Y) / w_sum
        A -= w_sum * np.outer(dx, dx)
        B -= w_sum * np.outer(dx, dy)
    else:
        # without an intercept the model lives at the origin, not at x_shift
        dx = np.zeros(X0.shape[1])
        A = A + np.outer(x_shift, Xw.sum(axis=0)) + np.outer(Xw.sum(axis=0), x_shift)
        A += w_sum * np.outer(x_shift, x_shift)
        B = B + np.outer(x_shift, w @ Y)
        dy = np.zeros(Y.shape[1])
    if alpha > 0:
        A[np.diag_indices_from(A)] += alpha
    coef = None
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            coef = linalg.solve(A, B, assume_a="pos", check_finite=False)
        except (linalg.LinAlgError, linalg.LinAlgWarning):
            coef = None
    if coef is None:
        # singular or ill-conditioned: minimum-norm solution, as lstsq gives
        coef = linalg.lstsq(A, B, cond=None, check_finite=False)[0]
    est = clone(template)
    if fit_intercept:
        intercept = dy - (dx + x_shift) @ coef
    else:
        intercept = np.zeros(Y.shape[1])
    est.coef_ = coef[:, 0] if y_is_1d else coef.T.copy()
    est.intercept_ = float(intercept[0]) if y_is_1d else intercept
    est.n_features_in_ = X0.shape[1]
    return est


def _fit_one(template, X, y, w, is_classifier):
    """Fit a clone of ``template`` on the rows with positive weight."""
    keep = w > 0
    if not keep.all():
        # zero weight is removal; dropping the rows keeps trees and k-NN-like
        # experts from seeing points that do not belong to them
        X, y, w = X[keep], y[keep], w[keep]
    if is_classifier and np.unique(y).size < 2:
        # a class-pure expert: the probabilities are known, and most
        # classifiers refuse to fit one class
        return DummyClassifier(strategy="prior").fit(X, y)
    est = clone(template)
    # a column of the weight matrix is strided; some Cython fits refuse that
    est.fit(X, y, **{sample_weight_key(template): np.ascontiguousarray(w)})
    return est


def fit_experts(templates, X, Y, weights, *, is_classifier, y_is_1d, n_jobs=None):
    """Fit one expert per column of ``weights``.

    Parameters
    ----------
    templates : list of estimators
        Unfitted expert templates, cloned before fitting.
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_outputs) or (n_samples,)
        Float targets (regression) or encoded labels (classification).
    weights : ndarray of shape (n_samples, n_experts)
        Responsibility times sample weight for each row and expert.
    is_classifier : bool
    y_is_1d : bool
        Whether the user's regression target was one-dimensional.
    n_jobs : int, default=None
        Parallel jobs for experts without the closed-form path.

    Returns
    -------
    experts : list of fitted estimators
    """
    K = weights.shape[1]
    experts = [None] * K
    alphas = [None if is_classifier else _fast_linear_alpha(t) for t in templates]
    fast = [k for k in range(K) if alphas[k] is not None]
    if fast:
        x_shift = X.mean(axis=0)
        X0 = X - x_shift
        for k in fast:
            experts[k] = _fit_linear_closed_form(
                templates[k], alphas[k], X0, x_shift, Y, weights[:, k], y_is_1d
            )
    slow = [k for k in range(K) if alphas[k] is None]
    if slow:
        y_fit = Y[:, 0] if (not is_classifier and y_is_1d) else Y
        fitted = Parallel(n_jobs=n_jobs)(
            delayed(_fit_one)(templates[k], X, y_fit, weights[:, k], is_classifier)
            for k in slow
        )
        for k, est in zip(slow, fitted, strict=True):
            experts[k] = est
    return experts
