"""The predictive distribution of a Gaussian mixture, row by row.

Each row ``i`` of the inputs below is a one-dimensional mixture with weights
``weights[i]``, means ``means[i]`` and standard deviations ``stds[i]``
(all of shape (n_rows, n_components)). scipy.stats has no vectorised quantile
function for a mixture of normals, so the root of the CDF is found here by
bisection, all rows at once.
"""

import numpy as np
from scipy.special import ndtr


def mixture_cdf(x, weights, means, stds):
    """CDF of each row's mixture at ``x`` (shape (n_rows,) or (n_rows, m))."""
    if x.ndim == 1:
        return np.sum(weights * ndtr((x[:, None] - means) / stds), axis=1)
    z = (x[:, :, None] - means[:, None, :]) / stds[:, None, :]
    return np.sum(weights[:, None, :] * ndtr(z), axis=2)


def mixture_quantiles(weights, means, stds, quantiles, *, n_bisections=100):
    """Quantiles of each row's mixture, shape (n_rows, n_quantiles).

    Bisection on the CDF between bounds that hold every component's mass
    but 1e-23; 100 halvings leave an interval below double precision.
    """
    quantiles = np.asarray(quantiles, dtype=float)
    active = weights > 0
    lo = np.min(np.where(active, means - 10 * stds, np.inf), axis=1)
    hi = np.max(np.where(active, means + 10 * stds, -np.inf), axis=1)
    lo = np.repeat(lo[:, None], quantiles.size, axis=1)
    hi = np.repeat(hi[:, None], quantiles.size, axis=1)
    for _ in range(n_bisections):
        mid = 0.5 * (lo + hi)
        below = mixture_cdf(mid, weights, means, stds) < quantiles[None, :]
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def mixture_log_density(x, weights, means, stds):
    """Log-density of each row's mixture at ``x`` (shape (n_rows, m))."""
    z = (x[:, :, None] - means[:, None, :]) / stds[:, None, :]
    log_comp = -0.5 * z**2 - np.log(stds[:, None, :] * np.sqrt(2 * np.pi))
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)[:, None, :]
    joint = log_w + log_comp
    peak = np.max(joint, axis=2, keepdims=True)
    return (peak + np.log(np.sum(np.exp(joint - peak), axis=2, keepdims=True)))[:, :, 0]


def mixture_modes(weights, means, stds, *, n_iter=200):
    """Highest mode of each row's mixture, shape (n_rows,).

    Mean-shift from every component mean (the fixed-point iteration for the
    stationary points of a Gaussian mixture climbs to a mode from any start),
    then the climbed point with the highest density.
    """
    x = means.copy()
    prec = 1.0 / stds**2
    for _ in range(n_iter):
        z = (x[:, :, None] - means[:, None, :]) * np.sqrt(prec)[:, None, :]
        resp = weights[:, None, :] * np.sqrt(prec)[:, None, :] * np.exp(-0.5 * z**2)
        num = np.sum(resp * (prec * means)[:, None, :], axis=2)
        den = np.sum(resp * prec[:, None, :], axis=2)
        x = np.where(den > 0, num / np.where(den > 0, den, 1.0), x)
    best = np.argmax(mixture_log_density(x, weights, means, stds), axis=1)
    return x[np.arange(x.shape[0]), best]


def sample_mixture(weights, means, stds, n_samples, random_state):
    """Draws from each row's mixture, shape (n_rows, n_samples)."""
    n_rows = weights.shape[0]
    u = random_state.random_sample((n_rows, n_samples))
    cum = np.cumsum(weights, axis=1)
    comp = np.minimum(
        (u[:, :, None] > cum[:, None, :]).sum(axis=2), weights.shape[1] - 1
    )
    rows = np.arange(n_rows)[:, None]
    noise = random_state.standard_normal((n_rows, n_samples))
    return means[rows, comp] + stds[rows, comp] * noise
