"""Standard errors of a fitted mixture: the observed information, by Louis' identity.

flexmix's ``refit()`` gives each expert's and the gate's coefficients with
standard errors, z and p values. They come from the observed information
of the mixture log-likelihood ``sum_i w_i log sum_k g_k(x_i) p_k(y_i | x_i)``
at the fit. Its Hessian, row by row, is Louis' (1982) identity: with
``l_ik = log g_k(x_i) + log p_k(y_i | x_i)`` (the complete-data
log-likelihood of row i from expert k), ``c_ik`` its gradient and ``h_ik``
the responsibilities,

    d^2 log p(y_i | x_i) = sum_k h_ik d^2 l_ik + sum_k h_ik c_ik c_ik^T - s_i s_i^T,

with ``s_i = sum_k h_ik c_ik`` the row's score. Every term is analytic for
a linear softmax gate and for linear experts (Gaussian with their noise
standard deviation, or multinomial logit), so the information is exact (no
finite differences, which need a step per parameter and lose digits).

The gate and multinomial experts are written with the first expert (class)
as reference, whose coefficients are zero, as in flexmix and
``nnet::multinom``: those are the identifiable parameters.
"""

import numpy as np
import pandas as pd
from scipy import linalg, special, stats
from sklearn.linear_model import (
    GammaRegressor,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
)

from ._kernels import log_softmax

# Rows per block: the (rows, n_experts, n_parameters) complete-data
# gradients of a block stay under about 16 MB.
_BLOCK_FLOATS = 2_000_000

INTERCEPT = "(Intercept)"


def _design(X, fit_intercept):
    """``[1, X]`` (or ``X``), the columns a linear predictor multiplies."""
    if not fit_intercept:
        return X
    return np.hstack([np.ones((X.shape[0], 1)), X])


def _term_names(feature_names, fit_intercept):
    return ([INTERCEPT] if fit_intercept else []) + list(feature_names)


class _SoftmaxTerms:
    """A multinomial logit ``softmax([0, V] x)``: the gate, or a logit expert.

    ``V`` (n_categories - 1, n_terms) holds the free coefficients, the
    first category's being zero.
    """

    def __init__(self, V, fit_intercept):
        self.V = V
        self.fit_intercept = fit_intercept

    @property
    def n_parameters(self):
        return self.V.size

    def probabilities(self, X):
        logits = _design(X, self.fit_intercept) @ self.V.T
        logits = np.hstack([np.zeros((X.shape[0], 1)), logits])
        return np.exp(log_softmax(logits))

    def gradients(self, X, P, category):
        """Gradient of ``log P[i, category[i]]``, shape (n_rows, n_parameters)."""
        D = _design(X, self.fit_intercept)
        onehot = np.zeros_like(P)
        onehot[np.arange(len(P)), category] = 1.0
        resid = onehot[:, 1:] - P[:, 1:]
        return (resid[:, :, None] * D[:, None, :]).reshape(len(P), -1)

    def hessian_sum(self, X, P, weights):
        """``sum_i weights_i d^2 log P[i, c]`` (the same for every ``c``)."""
        D = _design(X, self.fit_intercept)
        Q = P[:, 1:]
        n_free, q = Q.shape[1], D.shape[1]
        H = np.empty((n_free, q, n_free, q))
        for a in range(n_free):
            for b in range(a, n_free):
                # -(diag(p) - p p^T) on the categories, times x x^T
                c = Q[:, a] * ((a == b) - Q[:, b]) * weights
                H[a, :, b, :] = -(D.T * c) @ D
                H[b, :, a, :] = H[a, :, b, :].T
        return H.reshape(n_free * q, n_free * q)


class _GaussianExpertTerms:
    """A linear-Gaussian expert: ``N(y; b + x coef, noise_std^2)``."""

    def __init__(self, expert, variance, feature_names):
        self.fit_intercept = bool(getattr(expert, "fit_intercept", True))
        coef = np.ravel(expert.coef_)
        intercept = (
            [float(np.ravel(expert.intercept_)[0])] if self.fit_intercept else []
        )
        self.beta = np.concatenate([intercept, coef])
        self.std = float(np.sqrt(variance))
        # the noise std is a parameter of the information; the table shows
        # only coefficients (``names``), as flexmix's
        self.estimates = np.append(self.beta, self.std)
        self.names = _term_names(feature_names, self.fit_intercept)

    def _residuals(self, X, Y):
        D = _design(X, self.fit_intercept)
        return D, Y[:, 0] - D @ self.beta

    def gradients(self, X, Y):
        D, r = self._residuals(X, Y)
        s = self.std
        return np.hstack([D * (r / s**2)[:, None], (-1 / s + r**2 / s**3)[:, None]])

    def hessian_sum(self, X, Y, weights):
        D, r = self._residuals(X, Y)
        s = self.std
        p = D.shape[1]
        H = np.empty((p + 1, p + 1))
        H[:p, :p] = -(D.T * weights) @ D / s**2
        H[:p, p] = H[p, :p] = -2 * (D.T @ (weights * r)) / s**3
        H[p, p] = np.sum(weights * (1 / s**2 - 3 * r**2 / s**4))
        return H


class _LogLinearTerms:
    """Coefficients ``beta`` of a log-linear mean ``exp(b + x coef)``."""

    def __init__(self, expert, feature_names):
        self.fit_intercept = bool(expert.fit_intercept)
        coef = np.ravel(expert.coef_)
        intercept = [float(expert.intercept_)] if self.fit_intercept else []
        self.beta = np.concatenate([intercept, coef])
        self.names = _term_names(feature_names, self.fit_intercept)

    def _mean(self, X):
        D = _design(X, self.fit_intercept)
        return D, np.exp(D @ self.beta)


class _PoissonExpertTerms(_LogLinearTerms):
    """A Poisson GLM expert, log link: ``log p = y eta - exp(eta) - log y!``."""

    def __init__(self, expert, feature_names):
        super().__init__(expert, feature_names)
        self.estimates = self.beta

    def gradients(self, X, Y):
        D, mu = self._mean(X)
        return D * (Y[:, 0] - mu)[:, None]

    def hessian_sum(self, X, Y, weights):
        D, mu = self._mean(X)
        return -(D.T * (weights * mu)) @ D


class _GammaExpertTerms(_LogLinearTerms):
    """A Gamma GLM expert, log link, shape ``a``:
    ``log p = a log(a y / mu) - a y / mu - log y - log Gamma(a)``."""

    def __init__(self, expert, shape, feature_names):
        super().__init__(expert, feature_names)
        self.shape = float(shape)
        # the shape is a parameter of the information, not shown (as the
        # Gaussian's noise standard deviation)
        self.estimates = np.append(self.beta, self.shape)

    def gradients(self, X, Y):
        D, mu = self._mean(X)
        ratio = Y[:, 0] / mu
        a = self.shape
        d_shape = np.log(a * ratio) + 1 - ratio - special.digamma(a)
        return np.hstack([D * (a * (ratio - 1))[:, None], d_shape[:, None]])

    def hessian_sum(self, X, Y, weights):
        D, mu = self._mean(X)
        ratio = Y[:, 0] / mu
        a = self.shape
        p = D.shape[1]
        H = np.empty((p + 1, p + 1))
        H[:p, :p] = -(D.T * (weights * a * ratio)) @ D
        H[:p, p] = H[p, :p] = D.T @ (weights * (ratio - 1))
        H[p, p] = np.sum(weights) * (1 / a - special.polygamma(1, a))
        return H


class _LogitExpertTerms:
    """A multinomial (or binary) logistic-regression expert over all classes."""

    def __init__(self, expert, n_classes, feature_names, class_names):
        self.fit_intercept = bool(expert.fit_intercept)
        W = np.atleast_2d(expert.coef_)
        b = np.atleast_1d(expert.intercept_) if self.fit_intercept else None
        if W.shape[0] == 1 and n_classes == 2:
            # scikit-learn's binary model: the logit of the second class
            V = W if b is None else np.hstack([b[:, None], W])
        else:
            L = W if b is None else np.hstack([b[:, None], W])
            V = L[1:] - L[0]
        self.softmax = _SoftmaxTerms(V, self.fit_intercept)
        self.estimates = V.ravel()
        terms = _term_names(feature_names, self.fit_intercept)
        if n_classes == 2:
            self.names = terms
        else:
            self.names = [f"{c}: {t}" for c in class_names[1:] for t in terms]

    def gradients(self, X, Y):
        return self.softmax.gradients(X, self.softmax.probabilities(X), Y)

    def hessian_sum(self, X, Y, weights):
        return self.softmax.hessian_sum(X, self.softmax.probabilities(X), weights)


def _expert_terms(mixture, k, expert, feature_names, is_classifier):
    """The terms object of expert ``k``, or a ValueError saying why not."""
    name = mixture.expert_names_[k]
    if is_classifier:
        classes = mixture.classes_
        if not isinstance(expert, LogisticRegression):
            raise ValueError(
                f"coefficient_table needs LogisticRegression experts; expert "
                f"{name!r} is {type(expert).__name__}."
            )
        if len(expert.classes_) != len(classes):
            raise ValueError(
                f"Expert {name!r} saw only {len(expert.classes_)} of the "
                f"{len(classes)} classes in its rows: its coefficients of the "
                "others are not estimable, and neither are their standard errors."
            )
        return _LogitExpertTerms(
            expert, len(classes), feature_names, [str(c) for c in classes]
        )
    family = getattr(mixture, "family", "gaussian")
    if family in ("poisson", "gamma"):
        kind = PoissonRegressor if family == "poisson" else GammaRegressor
        if not isinstance(expert, kind):
            raise ValueError(
                f"coefficient_table needs {kind.__name__} experts for "
                f"family={family!r}; expert {name!r} is {type(expert).__name__}."
            )
        if family == "poisson":
            return _PoissonExpertTerms(expert, feature_names)
        return _GammaExpertTerms(expert, mixture.shape_[k], feature_names)
    # Ridge: the likelihood's information at the penalised estimate (the
    # penalty's own curvature is left out, as for the gate's)
    if not isinstance(expert, (LinearRegression, Ridge)):
        raise ValueError(
            "coefficient_table needs linear experts (LinearRegression, Ridge) "
            f"for a regressor; expert {name!r} is {type(expert).__name__}."
        )
    variance = mixture.noise_variance_.reshape(mixture.n_experts_, -1)
    if variance.shape[1] != 1:
        raise ValueError("coefficient_table needs a one-dimensional target.")
    return _GaussianExpertTerms(expert, variance[k, 0], feature_names)


def _gate_terms(gate, n_features):
    """The gate's free coefficients and the columns it sees."""
    if not (hasattr(gate, "coef_") and hasattr(gate, "intercept_")):
        raise ValueError(
            "coefficient_table needs the linear softmax gate (gate='linear'); "
            f"this gate is {type(gate).__name__}, whose weights have no "
            "standard errors here."
        )
    columns = np.asarray(getattr(gate, "features_", np.arange(n_features)))
    V = np.hstack([gate.intercept_[1:, None], gate.coef_[:, 1:].T])
    return _SoftmaxTerms(V, fit_intercept=True), columns


def observed_information(gate, gate_columns, experts, X, Y, resp, weights):
    """The observed information of the mixture log-likelihood (Louis).

    Parameters
    ----------
    gate : _SoftmaxTerms
    gate_columns : ndarray of int
        The columns of X the gate sees.
    experts : list of terms objects
        With ``estimates``, ``gradients(X, Y)`` and ``hessian_sum(X, Y, w)``.
    X, Y : ndarray
        Validated inputs and encoded targets.
    resp : ndarray of shape (n_samples, n_experts)
        Responsibilities at the fit.
    weights : ndarray of shape (n_samples,)

    Returns
    -------
    information : ndarray of shape (n_parameters, n_parameters)
        Parameters in the order: the gate's, then each expert's.
    """
    K = len(experts)
    sizes = [gate.n_parameters] + [e.estimates.size for e in experts]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    P = int(offsets[-1])
    info = np.zeros((P, P))
    block = max(1, _BLOCK_FLOATS // (K * P))
    for start in range(0, len(X), block):
        rows = slice(start, start + block)
        Xb, Yb, Hb, wb = X[rows], Y[rows], resp[rows], weights[rows]
        Xg = Xb[:, gate_columns]
        G = gate.probabilities(Xg)
        # complete-data gradients c_ik: the gate's part for every k, and
        # expert k's own block
        C = np.zeros((len(Xb), K, P))
        for k, terms in enumerate(experts):
            C[:, k, : offsets[1]] = gate.gradients(Xg, G, np.full(len(Xb), k))
            C[:, k, offsets[k + 1] : offsets[k + 2]] = terms.gradients(Xb, Yb)
        # minus the expected complete-data Hessian: the gate's is the same
        # for every k; expert k's weighs its rows by h_ik
        info[: offsets[1], : offsets[1]] -= gate.hessian_sum(Xg, G, wb)
        for k, terms in enumerate(experts):
            sl = slice(offsets[k + 1], offsets[k + 2])
            info[sl, sl] -= terms.hessian_sum(Xb, Yb, wb * Hb[:, k])
        # minus the covariance of the complete-data scores given y
        score = np.einsum("mk,mkp->mp", Hb, C)
        info -= np.einsum("mk,mkp,mkq->pq", Hb * wb[:, None], C, C)
        info += (score.T * wb) @ score
    return info


def coefficient_table(mixture, X, Y, resp, weights, feature_names, is_classifier):
    """Coefficients of the gate and experts with standard errors, z and p values.

    Parameters
    ----------
    mixture : fitted mixture of experts
    X, Y : ndarray
        Validated inputs and encoded targets (the training data).
    resp : ndarray of shape (n_samples, n_experts)
    weights : ndarray of shape (n_samples,)
    feature_names : list of str
    is_classifier : bool

    Returns
    -------
    table : pandas.DataFrame
        See ``coefficient_table`` of the estimators.
    """
    gate, columns = _gate_terms(mixture.gate_, X.shape[1])
    experts = [
        _expert_terms(mixture, k, e, feature_names, is_classifier)
        for k, e in enumerate(mixture.experts_)
    ]
    info = observed_information(gate, columns, experts, X, Y, resp, weights)
    try:
        factor = linalg.cho_factor(info)
    except linalg.LinAlgError:
        raise ValueError(
            "The observed information is not positive definite at this fit: "
            "it is not at a strict maximum of the likelihood (EM did not "
            "converge, or an expert or the gate has parameters the data do not "
            "determine, such as collinear columns, an expert with too few rows, "
            "or classes a logistic expert separates perfectly), so its "
            "standard errors are undefined."
        ) from None
    variance = np.diag(linalg.cho_solve(factor, np.eye(len(info))))
    names = mixture.expert_names_
    gate_terms = _term_names([feature_names[j] for j in columns], True)
    index = [(f"gate: {n}", t) for n in names[1:] for t in gate_terms]
    shown = [np.arange(gate.n_parameters)]
    offset = gate.n_parameters
    for name, terms in zip(names, experts, strict=True):
        index += [(name, t) for t in terms.names]
        shown.append(offset + np.arange(len(terms.names)))
        offset += terms.estimates.size
    shown = np.concatenate(shown)
    estimate = np.concatenate([gate.V.ravel()] + [e.estimates for e in experts])
    estimate, std_error = estimate[shown], np.sqrt(variance[shown])
    z_value = estimate / std_error
    return pd.DataFrame(
        {
            "estimate": estimate,
            "std_error": std_error,
            "z_value": z_value,
            "p_value": 2 * stats.norm.sf(np.abs(z_value)),
        },
        index=pd.MultiIndex.from_tuples(index, names=["part", "term"]),
    )
