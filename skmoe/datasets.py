"""Data drawn from a known mixture of experts, for tests and examples."""

import numpy as np
from scipy.special import logsumexp
from sklearn.utils import Bunch, check_random_state


def _draw_gate(rng, n_samples, n_features, n_experts, gate_scale):
    X = rng.standard_normal((n_samples, n_features))
    gate_coef = np.zeros((n_features, n_experts))
    gate_coef[:, 1:] = gate_scale * rng.standard_normal((n_features, n_experts - 1))
    gate_intercept = np.zeros(n_experts)
    logits = X @ gate_coef
    log_gate = logits - logsumexp(logits, axis=1, keepdims=True)
    u = rng.random_sample(n_samples)
    z = (np.exp(log_gate).cumsum(axis=1) < u[:, None]).sum(axis=1)
    z = np.minimum(z, n_experts - 1)
    return X, gate_coef, gate_intercept, log_gate, z


def make_moe_regression(
    n_samples=1000,
    n_features=2,
    n_experts=3,
    *,
    noise=0.1,
    gate_scale=3.0,
    coef_scale=2.0,
    return_params=False,
    random_state=None,
):
    """Regression data from a softmax-gated mixture of linear-Gaussian experts.

    ``x ~ N(0, I)``; expert ``z`` is drawn from ``softmax(x @ gate_coef)``;
    ``y = x @ coef[z] + intercept[z] + noise[z] * e`` with ``e ~ N(0, 1)``.

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=2
    n_experts : int, default=3
    noise : float or array-like of shape (n_experts,), default=0.1
        Noise standard deviation of each expert.
    gate_scale : float, default=3.0
        Scale of the gate coefficients; larger gives sharper regions.
    coef_scale : float, default=2.0
        Scale of the experts' coefficients and intercepts.
    return_params : bool, default=False
        Also return the true parameters.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    params : Bunch
        Only with ``return_params=True``: ``gate_coef`` (n_features,
        n_experts; column 0 zero), ``gate_intercept``, ``coef`` (n_experts,
        n_features), ``intercept``, ``noise`` (std per expert), ``expert``
        (the drawn expert of each row) and ``log_likelihood`` (of the data
        under the true model, ``sum_i log p(y_i | x_i)``).
    """
    rng = check_random_state(random_state)
    X, gate_coef, gate_intercept, log_gate, z = _draw_gate(
        rng, n_samples, n_features, n_experts, gate_scale
    )
    coef = coef_scale * rng.standard_normal((n_experts, n_features))
    intercept = coef_scale * rng.standard_normal(n_experts)
    noise = np.broadcast_to(np.asarray(noise, dtype=float), (n_experts,)).copy()
    means = X @ coef.T + intercept
    y = means[np.arange(n_samples), z] + noise[z] * rng.standard_normal(n_samples)
    if not return_params:
        return X, y
    log_norm = -0.5 * ((y[:, None] - means) / noise) ** 2 - np.log(
        noise * np.sqrt(2 * np.pi)
    )
    log_likelihood = float(logsumexp(log_gate + log_norm, axis=1).sum())
    params = Bunch(
        gate_coef=gate_coef,
        gate_intercept=gate_intercept,
        coef=coef,
        intercept=intercept,
        noise=noise,
        expert=z,
        log_likelihood=log_likelihood,
    )
    return X, y, params


def make_moe_classification(
    n_samples=1000,
    n_features=2,
    n_experts=2,
    n_classes=2,
    *,
    gate_scale=3.0,
    coef_scale=3.0,
    return_params=False,
    random_state=None,
):
    """Classification data from a softmax-gated mixture of logistic experts.

    ``x ~ N(0, I)``; expert ``z`` is drawn from ``softmax(x @ gate_coef)``;
    the class from ``softmax(x @ coef[z] + intercept[z])``.

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=2
    n_experts : int, default=2
    n_classes : int, default=2
    gate_scale : float, default=3.0
        Scale of the gate coefficients; larger gives sharper regions.
    coef_scale : float, default=3.0
        Scale of the experts' coefficients; larger gives cleaner classes.
    return_params : bool, default=False
        Also return the true parameters.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Integer labels ``0 .. n_classes - 1``.
    params : Bunch
        Only with ``return_params=True``: ``gate_coef``, ``gate_intercept``,
        ``coef`` (n_experts, n_features, n_classes), ``intercept``
        (n_experts, n_classes), ``expert`` and ``log_likelihood``.
    """
    rng = check_random_state(random_state)
    X, gate_coef, gate_intercept, log_gate, z = _draw_gate(
        rng, n_samples, n_features, n_experts, gate_scale
    )
    coef = coef_scale * rng.standard_normal((n_experts, n_features, n_classes))
    intercept = rng.standard_normal((n_experts, n_classes))
    logits = np.einsum("nf,kfc->nkc", X, coef) + intercept[None]
    log_p = logits - logsumexp(logits, axis=2, keepdims=True)
    p_z = np.exp(log_p[np.arange(n_samples), z])
    u = rng.random_sample(n_samples)
    y = np.minimum((p_z.cumsum(axis=1) < u[:, None]).sum(axis=1), n_classes - 1)
    if not return_params:
        return X, y
    log_likelihood = float(
        logsumexp(log_gate + log_p[np.arange(n_samples), :, y], axis=1).sum()
    )
    params = Bunch(
        gate_coef=gate_coef,
        gate_intercept=gate_intercept,
        coef=coef,
        intercept=intercept,
        expert=z,
        log_likelihood=log_likelihood,
    )
    return X, y, params
