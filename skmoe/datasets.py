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
    y, experts = _linear_gaussian_targets(rng, X, log_gate, z, noise, coef_scale)
    if not return_params:
        return X, y
    params = Bunch(gate_coef=gate_coef, gate_intercept=gate_intercept, **experts)
    return X, y, params


def _linear_gaussian_targets(rng, X, log_gate, z, noise, coef_scale):
    """Targets from linear-Gaussian experts, row i from expert ``z[i]``.

    Returns y and a dict of the experts' ``coef``, ``intercept``, ``noise``,
    the ``expert`` of each row and the ``log_likelihood`` of the data.
    """
    n_samples, n_features = X.shape
    n_experts = log_gate.shape[1]
    coef = coef_scale * rng.standard_normal((n_experts, n_features))
    intercept = coef_scale * rng.standard_normal(n_experts)
    noise = np.broadcast_to(np.asarray(noise, dtype=float), (n_experts,)).copy()
    means = X @ coef.T + intercept
    y = means[np.arange(n_samples), z] + noise[z] * rng.standard_normal(n_samples)
    if np.all(noise > 0):
        log_norm = -0.5 * ((y[:, None] - means) / noise) ** 2 - np.log(
            noise * np.sqrt(2 * np.pi)
        )
        log_likelihood = float(logsumexp(log_gate + log_norm, axis=1).sum())
    else:  # noise-free experts: the density of the data is unbounded
        log_likelihood = np.inf
    return y, dict(
        coef=coef,
        intercept=intercept,
        noise=noise,
        expert=z,
        log_likelihood=log_likelihood,
    )


def make_hme_regression(
    n_samples=1000,
    n_features=2,
    depth=2,
    branching=2,
    *,
    noise=0.1,
    gate_scale=3.0,
    coef_scale=2.0,
    return_params=False,
    random_state=None,
):
    """Regression data from a hierarchical mixture of linear-Gaussian experts.

    A tree of softmax gates (Jordan & Jacobs, 1994) of the given depth and
    branching routes each row to a leaf: ``x ~ N(0, I)``; at each internal
    node the branch is drawn from ``softmax(x @ node_coef + node_intercept)``
    (child 0 the reference); leaf ``l`` (its digits in base ``branching``
    are the branches taken, most significant first) is a linear-Gaussian
    expert as in :func:`make_moe_regression`.

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=2
    depth : int, default=2
        Levels of gates.
    branching : int, default=2
        Children per node; there are ``branching ** depth`` experts.
    noise : float or array-like of shape (n_experts,), default=0.1
        Noise standard deviation of each expert.
    gate_scale : float, default=3.0
        Scale of the node gates' coefficients and intercepts.
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
        Only with ``return_params=True``: ``node_coef`` (a list over levels
        of arrays (branching ** level, n_features, branching)),
        ``node_intercept`` (a list of (branching ** level, branching)),
        ``leaf_gate`` (n_samples, n_experts; the true leaf probabilities),
        ``coef``, ``intercept``, ``noise``, ``expert`` (the drawn leaf of
        each row) and ``log_likelihood``.
    """
    rng = check_random_state(random_state)
    X = rng.standard_normal((n_samples, n_features))
    log_gate = np.zeros((n_samples, 1))
    node_coef, node_intercept = [], []
    for level in range(depth):
        n_nodes = branching**level
        coef = np.zeros((n_nodes, n_features, branching))
        coef[:, :, 1:] = gate_scale * rng.standard_normal(
            (n_nodes, n_features, branching - 1)
        )
        intercept = np.zeros((n_nodes, branching))
        intercept[:, 1:] = rng.standard_normal((n_nodes, branching - 1))
        logits = np.einsum("nf,mfb->nmb", X, coef) + intercept[None]
        branch = logits - logsumexp(logits, axis=2, keepdims=True)
        log_gate = (log_gate[:, :, None] + branch).reshape(n_samples, -1)
        node_coef.append(coef)
        node_intercept.append(intercept)
    u = rng.random_sample(n_samples)
    z = (np.exp(log_gate).cumsum(axis=1) < u[:, None]).sum(axis=1)
    z = np.minimum(z, log_gate.shape[1] - 1)
    y, experts = _linear_gaussian_targets(rng, X, log_gate, z, noise, coef_scale)
    if not return_params:
        return X, y
    params = Bunch(
        node_coef=node_coef,
        node_intercept=node_intercept,
        leaf_gate=np.exp(log_gate),
        **experts,
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
