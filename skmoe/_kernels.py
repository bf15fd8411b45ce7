"""Numba kernels for the hot loops of EM, each beside its NumPy reference.

Matrix products (``X @ V``, ``X.T @ D``) stay with BLAS through NumPy; the
kernels here are the row-wise passes around them that NumPy would spread over
several temporaries: log-softmax, the Gaussian expert log-density, the
responsibilities with the per-row log-likelihood, and the gate's soft-target
cross-entropy with its residual. Every ``*_numba`` function has a ``*_numpy``
twin computing the same maths; the tests assert they agree, and the NumPy
twin is the fallback when ``SKMOE_DISABLE_NUMBA=1``.
"""

import math
import os

import numpy as np
from scipy.special import logsumexp

_LOG_2PI = math.log(2.0 * math.pi)

if os.environ.get("SKMOE_DISABLE_NUMBA", "0") == "1":  # pragma: no cover
    NUMBA_AVAILABLE = False
else:
    try:
        import numba

        NUMBA_AVAILABLE = True
    except ImportError:  # pragma: no cover - numba is a hard dependency
        NUMBA_AVAILABLE = False

# Below this many rows a parallel launch costs more than it saves.
_PARALLEL_MIN_ROWS = 20_000


# ---------------------------------------------------------------------------
# NumPy references
# ---------------------------------------------------------------------------


def log_softmax_numpy(logits):
    """Row-wise log-softmax of an (n, K) array."""
    return logits - logsumexp(logits, axis=1, keepdims=True)


def gaussian_log_prob_numpy(Y, means, variances):
    """log N(y_i; mean_ik, diag(var_k)) for every row and expert.

    Parameters
    ----------
    Y : ndarray of shape (n, n_outputs)
    means : ndarray of shape (n, K, n_outputs)
    variances : ndarray of shape (K, n_outputs)

    Returns
    -------
    log_prob : ndarray of shape (n, K)
    """
    resid = Y[:, None, :] - means
    quad = np.sum(resid**2 / variances[None], axis=2)
    log_det = np.sum(np.log(variances), axis=1)
    n_outputs = Y.shape[1]
    return -0.5 * (quad + log_det[None, :] + n_outputs * _LOG_2PI)


def responsibilities_numpy(log_gate, log_prob):
    """Posterior expert probabilities and per-row log-likelihood.

    Returns ``(resp, row_ll)`` with ``resp[i, k] = g_ik p_ik / sum_j g_ij p_ij``
    and ``row_ll[i] = log sum_k g_ik p_ik``, computed in log space.
    """
    joint = log_gate + log_prob
    row_ll = logsumexp(joint, axis=1)
    dead = np.isneginf(row_ll)
    # a row no expert can explain has no finite posterior: spread it evenly
    row_ll_safe = np.where(dead, 0.0, row_ll)
    resp = np.exp(joint - row_ll_safe[:, None])
    resp[dead] = 1.0 / joint.shape[1]
    return resp, row_ll


def gate_loss_numpy(logits, targets, sample_weight):
    """Weighted soft-target cross-entropy of a softmax gate.

    Returns ``(loss, dlogits)`` where ``loss = -sum_i w_i sum_k t_ik log g_ik``
    and ``dlogits[i, k] = w_i (g_ik - t_ik)`` is its gradient in the logits
    (the targets of each row sum to one).
    """
    log_g = log_softmax_numpy(logits)
    loss = -np.sum(sample_weight * np.sum(targets * log_g, axis=1))
    dlogits = sample_weight[:, None] * (np.exp(log_g) - targets)
    return loss, dlogits


# ---------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------

if NUMBA_AVAILABLE:
    _njit = numba.njit(cache=True, fastmath=False, nogil=True)
    _njit_parallel = numba.njit(cache=True, fastmath=False, nogil=True, parallel=True)

    def _log_softmax_rows(logits, out):
        n, K = logits.shape
        for i in numba.prange(n):
            m = logits[i, 0]
            for k in range(1, K):
                if logits[i, k] > m:
                    m = logits[i, k]
            s = 0.0
            for k in range(K):
                s += math.exp(logits[i, k] - m)
            lse = m + math.log(s)
            for k in range(K):
                out[i, k] = logits[i, k] - lse
        return out

    def _gaussian_log_prob_rows(Y, means, variances, out):
        n, K, n_out = means.shape
        log_norm = np.empty(K)
        for k in range(K):
            acc = n_out * _LOG_2PI
            for o in range(n_out):
                acc += math.log(variances[k, o])
            log_norm[k] = acc
        for i in numba.prange(n):
            for k in range(K):
                q = 0.0
                for o in range(n_out):
                    r = Y[i, o] - means[i, k, o]
                    q += r * r / variances[k, o]
                out[i, k] = -0.5 * (q + log_norm[k])
        return out

    def _responsibilities_rows(log_gate, log_prob, resp, row_ll):
        n, K = log_gate.shape
        for i in numba.prange(n):
            m = -np.inf
            for k in range(K):
                v = log_gate[i, k] + log_prob[i, k]
                resp[i, k] = v
                if v > m:
                    m = v
            if m == -np.inf:
                # every expert gives the row zero density: no finite posterior
                for k in range(K):
                    resp[i, k] = 1.0 / K
                row_ll[i] = -np.inf
                continue
            s = 0.0
            for k in range(K):
                e = math.exp(resp[i, k] - m)
                resp[i, k] = e
                s += e
            for k in range(K):
                resp[i, k] /= s
            row_ll[i] = m + math.log(s)

    def _gate_loss_rows(logits, targets, sample_weight, dlogits, row_loss):
        n, K = logits.shape
        for i in numba.prange(n):
            m = logits[i, 0]
            for k in range(1, K):
                if logits[i, k] > m:
                    m = logits[i, k]
            s = 0.0
            for k in range(K):
                s += math.exp(logits[i, k] - m)
            lse = m + math.log(s)
            w = sample_weight[i]
            acc = 0.0
            for k in range(K):
                lg = logits[i, k] - lse
                acc += targets[i, k] * lg
                dlogits[i, k] = w * (math.exp(lg) - targets[i, k])
            row_loss[i] = -w * acc

    _log_softmax_serial = _njit(_log_softmax_rows)
    _log_softmax_parallel = _njit_parallel(_log_softmax_rows)
    _gaussian_serial = _njit(_gaussian_log_prob_rows)
    _gaussian_parallel = _njit_parallel(_gaussian_log_prob_rows)
    _resp_serial = _njit(_responsibilities_rows)
    _resp_parallel = _njit_parallel(_responsibilities_rows)
    _gate_loss_serial = _njit(_gate_loss_rows)
    _gate_loss_parallel = _njit_parallel(_gate_loss_rows)

    def _pick(serial, parallel, n_rows):
        return parallel if n_rows >= _PARALLEL_MIN_ROWS else serial

    def log_softmax_numba(logits):
        """Numba twin of :func:`log_softmax_numpy`."""
        logits = np.ascontiguousarray(logits, dtype=np.float64)
        out = np.empty_like(logits)
        return _pick(_log_softmax_serial, _log_softmax_parallel, len(logits))(
            logits, out
        )

    def gaussian_log_prob_numba(Y, means, variances):
        """Numba twin of :func:`gaussian_log_prob_numpy`."""
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        means = np.ascontiguousarray(means, dtype=np.float64)
        variances = np.ascontiguousarray(variances, dtype=np.float64)
        out = np.empty((means.shape[0], means.shape[1]))
        return _pick(_gaussian_serial, _gaussian_parallel, len(Y))(
            Y, means, variances, out
        )

    def responsibilities_numba(log_gate, log_prob):
        """Numba twin of :func:`responsibilities_numpy`."""
        log_gate = np.ascontiguousarray(log_gate, dtype=np.float64)
        log_prob = np.ascontiguousarray(log_prob, dtype=np.float64)
        resp = np.empty_like(log_gate)
        row_ll = np.empty(log_gate.shape[0])
        _pick(_resp_serial, _resp_parallel, len(log_gate))(
            log_gate, log_prob, resp, row_ll
        )
        return resp, row_ll

    def gate_loss_numba(logits, targets, sample_weight):
        """Numba twin of :func:`gate_loss_numpy`."""
        logits = np.ascontiguousarray(logits, dtype=np.float64)
        targets = np.ascontiguousarray(targets, dtype=np.float64)
        sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        dlogits = np.empty_like(logits)
        row_loss = np.empty(logits.shape[0])
        _pick(_gate_loss_serial, _gate_loss_parallel, len(logits))(
            logits, targets, sample_weight, dlogits, row_loss
        )
        return float(row_loss.sum()), dlogits

    log_softmax = log_softmax_numba
    gaussian_log_prob = gaussian_log_prob_numba
    responsibilities = responsibilities_numba
    gate_loss = gate_loss_numba
else:  # pragma: no cover
    log_softmax = log_softmax_numpy
    gaussian_log_prob = gaussian_log_prob_numpy
    responsibilities = responsibilities_numpy
    gate_loss = gate_loss_numpy
