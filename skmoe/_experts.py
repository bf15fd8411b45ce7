"""Fitting experts on responsibility-weighted data (the experts' M-step)."""

from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import (
    GammaRegressor,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    TweedieRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import has_fit_parameter

from ._em._logistic import fit_logistic_experts, logistic_settings
from ._em._stats import closed_form_experts, fast_linear_alpha
from ._scaling import weighted_standardisation
from ._sparse import is_sparse


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
        if isinstance(est, type):
            raise TypeError(
                f"Expert {name!r} is the class {est.__name__}, not an estimator: "
                f"give an instance, e.g. {est.__name__}()."
            )
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


# Experts whose weighted fit maximises their weighted (penalised)
# likelihood: linear and generalised linear models, and constants. With them
# an EM iteration never lowers the objective; with others (trees, boosting,
# neighbours) it can, and EM keeps its best iteration instead.
_EXACT_EXPERTS = (
    LinearRegression,
    Ridge,
    LogisticRegression,
    PoissonRegressor,
    GammaRegressor,
    TweedieRegressor,
    DummyRegressor,
    DummyClassifier,
)


def fits_exactly(template):
    """Whether ``template``'s weighted fit is its weighted maximum likelihood.

    A Pipeline is judged by its last step (the steps before it see the same
    rows at every M-step).
    """
    if isinstance(template, Pipeline):
        template = template.steps[-1][1]
    return isinstance(template, _EXACT_EXPERTS)


# Generalised linear experts that scikit-learn's own solver continues from
# the last M-step's coefficients (their ``warm_start``): the same exact
# weighted fit, in fewer Newton iterations.
_GLM_EXPERTS = (PoissonRegressor, GammaRegressor, TweedieRegressor)


def _warm_glm(template, previous):
    """A clone of the GLM ``template`` set to start from ``previous``, or None.

    None where ``template`` is not a GLM, ``previous`` is not a fitted one of
    its kind, or its coefficients are not finite (an expert of mean 0).
    """
    if not isinstance(template, _GLM_EXPERTS) or type(previous) is not type(template):
        return None
    coef, intercept = previous.coef_, previous.intercept_
    if not (np.all(np.isfinite(coef)) and np.isfinite(intercept)):
        return None
    est = clone(template).set_params(warm_start=True)
    est.coef_, est.intercept_ = coef.copy(), intercept
    return est


def _fit_one(template, X, y, w, is_classifier, previous=None):
    """Fit a clone of ``template`` on the rows with positive weight.

    ``previous``: the last M-step's expert, from which a GLM expert starts
    (see :func:`_warm_glm`).
    """
    keep = w > 0
    if not keep.all():
        # zero weight is removal; dropping the rows keeps trees and k-NN-like
        # experts from seeing points that do not belong to them
        X, y, w = X[keep], y[keep], w[keep]
    if is_classifier and np.unique(y).size < 2:
        # a class-pure expert: the probabilities are known, and most
        # classifiers refuse to fit one class
        return DummyClassifier(strategy="prior").fit(X, y)
    est = _warm_glm(template, previous)
    warm = est is not None
    if not warm:
        est = clone(template)
    # a column of the weight matrix is strided; some Cython fits refuse that
    est.fit(X, y, **{sample_weight_key(template): np.ascontiguousarray(w)})
    if warm:
        est.warm_start = template.warm_start  # its parameters as the user set them
    return est


class ClosedFormStats(NamedTuple):
    """What the experts' Gram matrices give beside the fitted experts.

    ``weight_sums``: ``(centre, totals, centred_sums)`` with ``totals[k] =
    sum_i weights[i, k]`` and ``centred_sums[k] = sum_i weights[i, k] (X[i]
    - centre)`` (the gate's M-step starts from them, see ``SoftmaxGateFit``);
    ``variances``: each expert's weighted mean squared residual, (K, q).
    """

    weight_sums: tuple
    variances: np.ndarray


def fit_experts(
    templates,
    X,
    Y,
    weights,
    *,
    is_classifier,
    y_is_1d,
    n_jobs=None,
    return_stats=False,
    grams=None,
    shifts=None,
    previous=None,
    standardised=None,
    rows=None,
):
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
    return_stats : bool, default=False
        Whether to return the Gram matrices' :class:`ClosedFormStats` too.
    grams, shifts : ndarray and tuple, default=None
        The closed-form experts' Gram matrices and their centres, where a
        fused EM pass made them (see ``closed_form_experts``).
    previous : list of estimators, default=None
        The experts of the last M-step: LogisticRegression experts take one
        Newton step from them (see ``fit_logistic_experts``), and GLM
        experts' solvers start from their coefficients.
    standardised : tuple of (mean, scale), default=None
        The inputs' standardisation for LogisticRegression experts; None
        computes it.
    rows : list of ndarray, default=None
        Per expert, the only rows of positive weight (sparse routing), where
        known: closed-form experts then read only those.

    Returns
    -------
    experts : list of fitted estimators
    stats : ClosedFormStats or None
        Only with ``return_stats``: where every expert took the closed form
        (its Gram matrix holds them, so they cost nothing); else None.
    """
    K = weights.shape[1]
    experts = [None] * K
    alphas = [None if is_classifier else fast_linear_alpha(t) for t in templates]
    fast = [k for k in range(K) if alphas[k] is not None]
    stats = None
    if fast:
        fitted, weight_sums, variances = closed_form_experts(
            [templates[k] for k in fast],
            [alphas[k] for k in fast],
            X,
            Y,
            weights if len(fast) == K else weights[:, fast],
            y_is_1d,
            grams=grams,
            shifts=shifts,
            rows=None if rows is None else [rows[k] for k in fast],
        )
        for k, est in zip(fast, fitted, strict=True):
            experts[k] = est
        if len(fast) == K:
            stats = ClosedFormStats(weight_sums, variances)
    slow = [k for k in range(K) if alphas[k] is None]
    logistic = [logistic_settings(t) if is_classifier else None for t in templates]
    # the Newton kernels read dense rows: sparse X goes to the experts' own fit
    newton = [] if is_sparse(X) else [k for k in slow if logistic[k] is not None]
    if newton:
        if standardised is None:
            standardised = weighted_standardisation(X, np.ones(X.shape[0]))
        fitted = fit_logistic_experts(
            [templates[k] for k in newton],
            [logistic[k] for k in newton],
            X,
            Y,
            weights[:, newton],
            standardised,
            None if previous is None else [previous[k] for k in newton],
        )
        for k, est in zip(newton, fitted, strict=True):
            experts[k] = est
        # an expert whose rows hold one class goes the general way
        slow = [k for k in slow if experts[k] is None]
    if slow:
        y_fit = Y[:, 0] if (not is_classifier and y_is_1d) else Y
        fitted = Parallel(n_jobs=n_jobs)(
            delayed(_fit_one)(
                templates[k],
                X,
                y_fit,
                weights[:, k],
                is_classifier,
                None if previous is None else previous[k],
            )
            for k in slow
        )
        for k, est in zip(slow, fitted, strict=True):
            experts[k] = est
    return (experts, stats) if return_stats else experts
