"""Sparse inputs: the gate's and the linear experts' sums over scipy.sparse rows.

A one-hot encoded column with many categories makes a ColumnTransformer's
output sparse. The in-memory EM fits it as it is: the experts that take
sparse input get it, and the linear softmax gate and the closed-form linear
experts take their sums from sparse products instead of the numba kernels
(which read dense rows). Centring would make the rows dense, so the
standardisation the gate works in is folded into its coefficients and
applied to the sums afterwards (a rank-one correction), never to the rows.

Each function here is the sparse twin of a dense kernel and returns what it
returns; ``tests/test_sparse.py`` checks them against the dense ones.
"""

import numpy as np
import scipy.sparse as sp

from ._kernels import log_softmax, weighted_cross_entropy


def is_sparse(X):
    """Whether ``X`` is a scipy.sparse matrix or array."""
    return sp.issparse(X)


def as_csr(X):
    """``X`` as a float64 CSR matrix (rows are what every sum here walks)."""
    return sp.csr_matrix(X, dtype=np.float64)


def _weighted(X, w):
    """``diag(w) X``, sparse."""
    return sp.diags(w) @ X


def sparse_standardisation(X, sample_weight):
    """Weighted column means and variances of sparse ``X``: ``(mean, var)``."""
    w = sample_weight / sample_weight.sum()
    mean = np.asarray(X.T @ w).ravel()
    mean_square = np.asarray(X.multiply(X).T @ w).ravel()
    # E[x^2] - E[x]^2 without centring the rows; clipped at the round-off
    return mean, np.maximum(mean_square - mean**2, 0.0)


def _standardised_folding(mean, scale, theta):
    """Coefficients and intercepts of raw rows equal to ``theta`` on
    standardised ones: ``((x - mean) / scale) @ W + b = x @ W' + b'``."""
    W = theta[:-1]
    if mean is None:
        return W, theta[-1]
    return W / scale[:, None], theta[-1] - (mean / scale) @ W


def sparse_gate_objective(
    X,
    mean,
    scale,
    theta,
    targets,
    sample_weight,
    log_proba=None,
    given=False,
    proba=None,
):
    """:func:`skmoe._kernels.gate_objective` on sparse ``X``: (loss, grad)."""
    if given:
        log_g = log_proba
        g = np.exp(log_g) if proba is None else proba
    else:
        W, b = _standardised_folding(mean, scale, theta)
        logits = np.zeros((X.shape[0], theta.shape[1] + 1))
        logits[:, 1:] = X @ W + b
        log_g = log_softmax(logits)
        g = np.exp(log_g)
        if log_proba is not None:
            log_proba[...] = log_g
        if proba is not None:
            proba[...] = g
    loss = weighted_cross_entropy(log_g, targets, sample_weight)
    dlogits = sample_weight[:, None] * (g[:, 1:] - targets[:, 1:])
    column = dlogits.sum(axis=0)
    grad = np.empty_like(theta)
    raw = np.asarray(X.T @ dlogits)
    if mean is None:
        grad[:-1] = raw
    else:
        grad[:-1] = (raw - np.outer(mean, column)) / scale[:, None]
    grad[-1] = column
    return loss, grad


def sparse_gate_hessian(X, mean, scale, theta, sample_weight, stride=1):
    """:func:`skmoe._kernels.gate_hessian` on sparse ``X``.

    ``H[(j, a), (l, b)] = sum_i w_i z_ij z_il g_ia (delta_ab - g_ib)``: one
    sparse product ``X^T diag(c) X`` per pair of experts, the standardisation
    applied to the small dense result.
    """
    X, w = X[::stride], sample_weight[::stride]
    n, d = X.shape
    K1 = theta.shape[1]
    p = d + 1
    if mean is None:
        mean, scale = np.zeros(d), np.ones(d)
    W, b = _standardised_folding(mean, scale, theta)
    logits = np.zeros((n, K1 + 1))
    logits[:, 1:] = X @ W + b
    g = np.exp(log_softmax(logits))[:, 1:]
    H = np.empty((p, K1, p, K1))
    for a in range(K1):
        for c_ in range(a, K1):
            c = w * g[:, a] * ((a == c_) - g[:, c_])
            block = _standardised_gram(X, c, mean, scale)
            H[:, a, :, c_] = block
            H[:, c_, :, a] = block.T
    return H.reshape(p * K1, p * K1)


def _standardised_gram(X, c, mean, scale):
    """``Z^T diag(c) Z`` for ``Z = [(X - mean) / scale, 1]``, from sparse X."""
    d = X.shape[1]
    raw = (X.T @ _weighted(X, c)).toarray()
    u = np.asarray(X.T @ c).ravel()
    s = float(c.sum())
    out = np.empty((d + 1, d + 1))
    centred = raw - np.outer(u, mean) - np.outer(mean, u) + s * np.outer(mean, mean)
    out[:d, :d] = centred / np.outer(scale, scale)
    out[:d, d] = out[d, :d] = (u - s * mean) / scale
    out[d, d] = s
    return out


def sparse_weighted_grams(X, x_shift, Y, weights, y_shift=None):
    """:func:`skmoe._kernels.weighted_grams` on sparse ``X``: (K, p, p).

    The Gram matrix of ``[X - x_shift, 1, Y - y_shift]`` under each column
    of ``weights``, from ``X^T diag(w) X`` (sparse) and dense products with
    the intercept and target columns; ``Y`` is dense and centred as it is.
    """
    n, d = X.shape
    Yc = Y if y_shift is None else Y - y_shift
    q = Yc.shape[1]
    p = d + 1 + q
    dense = np.hstack([np.ones((n, 1)), Yc])  # the columns after X
    K = weights.shape[1]
    grams = np.empty((K, p, p))
    for k in range(K):
        w = weights[:, k]
        wd = dense * w[:, None]
        xx = (X.T @ _weighted(X, w)).toarray()
        xd = np.asarray(X.T @ wd)
        dd = dense.T @ wd
        # shift X's columns: [X - 1 s^T] = [X, 1] times a unit triangle
        s = x_shift
        one = xd[:, 0]
        total = dd[0, 0]
        grams[k, :d, :d] = (
            xx - np.outer(one, s) - np.outer(s, one) + total * np.outer(s, s)
        )
        grams[k, :d, d:] = xd - np.outer(s, dd[0])
        grams[k, d:, :d] = grams[k, :d, d:].T
        grams[k, d:, d:] = dd
    return grams
