"""Numba kernels for the hot loops of EM, each beside its NumPy reference.

Matrix products (``X @ V``, ``X.T @ D``) stay with BLAS through NumPy; the
kernels here are the row-wise passes around them that NumPy would spread over
several temporaries: log-softmax, the Gaussian expert log-density, the
responsibilities with the per-row log-likelihood, and the gate's soft-target
cross-entropy with its residual. Every ``*_numba`` function has a ``*_numpy``
twin computing the same maths; the tests assert they agree, and the NumPy
twin is the fallback when ``SKMOE_DISABLE_NUMBA=1``.

The gate's M-step objective (``gate_objective``) is one pass over blocks of
rows: each block is standardised, multiplied by the coefficients (BLAS),
turned into the cross-entropy and its gradient, and multiplied back (BLAS)
while it is in cache, so no ``(n, n_features)`` or ``(n, n_experts)``
temporaries are made at each L-BFGS evaluation.
"""

import functools
import math
import os
import threading
import types
from contextlib import contextmanager

import numpy as np
from scipy import sparse
from scipy.optimize import minimize
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

# The experts' weighted Gram matrices are summed over fixed parts of
# _GRAM_PART_ROWS rows (one partial sum each, added in order: the result does
# not depend on the threads), each part in blocks of rows held transposed,
# the block's columns of Z = [X, 1, Y] and its K weight columns, in about
# _GRAM_BLOCK_BYTES, which stay in the L1 cache while every expert's upper
# triangle is summed from them in 4 x 4 register tiles (at 1e6 x 20 x 8, all
# eight Grams in 52 ms on two cores against 182 ms for one BLAS product per
# block of [w_1 Z, ..., w_K Z]: that thin shape ran at a third of BLAS's
# peak and did the lower triangles too; blocks of 128-384 rows were within
# 10% of each other, 512 rows, out of L1, 2.5x slower).
_GRAM_PART_ROWS = 32_768
_GRAM_BLOCK_BYTES = 40_960
_GRAM_BLOCK_MIN_ROWS = 64
_GRAM_BLOCK_MAX_ROWS = 512
_GRAM_TILE = 4


def gram_padded_columns(p):
    """Columns of Z padded to whole register tiles."""
    return -(-p // _GRAM_TILE) * _GRAM_TILE


def gram_block_rows(p, n_experts):
    """Rows per block of the Gram kernels for ``p`` columns of Z and K experts."""
    rows = _GRAM_BLOCK_BYTES // (8 * (gram_padded_columns(p) + n_experts))
    return max(_GRAM_BLOCK_MIN_ROWS, min(_GRAM_BLOCK_MAX_ROWS, rows // 8 * 8))


@functools.lru_cache(maxsize=64)
def _strict_upper(p):
    return np.triu_indices(p, 1)


def gram_parts_total(parts, p):
    """The Gram matrices (K, p, p) from the kernels' parts of upper tiles."""
    G = np.ascontiguousarray(parts.sum(axis=0)[:, :p, :p])
    rows, cols = _strict_upper(p)
    # the lower triangle mirrored from the upper (np.triu twice took 3x as
    # long, a tenth of a small fit's M-step)
    G[:, cols, rows] = G[:, rows, cols]
    return G


# Responsibilities below this are set to 0: they weigh nothing in any sum
# (an expert's Gram matrix or the gate's targets change by less than their
# round-off), and the subnormal numbers among them (0.26% of the
# responsibilities of a converged 1e6 x 20 x 8 fit) slowed every product
# they entered (the Gram matrices by 40%).
RESPONSIBILITY_FLOOR = 1e-250

# Rows per block of the fused gate objective: each block sums its own part of
# the gradient. Fixed (not one block per thread) so that the result does not
# depend on the number of threads.
_GATE_BLOCK_ROWS = 4096
# Rows per sub-block inside them: their standardised rows, logits and
# exponentials stay in the L1/L2 caches.
_GATE_SUB_ROWS = 256

# Rows per block of linear_posterior: its buffers stay in cache.
_LINEAR_POSTERIOR_BLOCK_ROWS = 512


class _OneThread:
    """Holds the libraries of one threadpoolctl API to one thread.

    Concurrent users share one limit: the first to enter sets it, the last
    to leave restores the original. Each taking and restoring its own would
    let a thread restore another's limit of 1 and leave the library on one
    thread for good.
    """

    def __init__(self, user_api):
        self.user_api = user_api
        self.lock = threading.Lock()
        self.users = 0
        self.saved = None
        self.libraries = None

    @contextmanager
    def __call__(self):
        with self.lock:
            if self.libraries is None:
                from threadpoolctl import ThreadpoolController

                # the libraries once: ThreadpoolController.limit() inspects
                # every loaded library per call (~0.1 ms, 4 calls per EM step)
                self.libraries = (
                    ThreadpoolController()
                    .select(user_api=self.user_api)
                    .lib_controllers
                )
            if self.users == 0:
                self.saved = [
                    (lib, lib.num_threads)
                    for lib in self.libraries
                    if lib.num_threads != 1
                ]
                for lib, _ in self.saved:
                    lib.set_num_threads(1)
            self.users += 1
        try:
            yield
        finally:
            with self.lock:
                self.users -= 1
                if self.users == 0:
                    for lib, threads in self.saved:
                        lib.set_num_threads(threads)
                    self.saved = None


_ONE_BLAS_THREAD = _OneThread("blas")
_ONE_OPENMP_THREAD = _OneThread("openmp")


def single_threaded_blas():
    """Hold BLAS to one thread inside the block (restored on exit).

    The EM loop alternates BLAS calls with numba's parallel kernels. On a
    small machine a multithreaded BLAS then fights the numba threads (its
    idle workers spin-wait), which made the experts' ``X^T W X`` products
    10-20x slower than on one thread. The blocks guarded by this either
    parallelise themselves or are too small to gain from BLAS threads.
    Thread-safe: blocks entered concurrently share one limit, lifted when
    the last of them exits.
    """
    return _ONE_BLAS_THREAD()


@contextmanager
def single_threaded_libraries():
    """Hold BLAS and OpenMP to one thread inside the block (restored on exit).

    For fits too small for any thread to pay: there, BLAS and OpenMP threads
    (in scikit-learn's experts and k-means) only hand work back and forth,
    and fight other processes for the cores. Thread-safe as
    :func:`single_threaded_blas`.
    """
    with _ONE_BLAS_THREAD(), _ONE_OPENMP_THREAD():
        yield


@contextmanager
def fit_threads(n_rows, hold_blas=False):
    """The threads a fit of ``n_rows`` rows may use, inside the block.

    Below ``_PARALLEL_MIN_ROWS`` rows the kernels run serially and BLAS and
    OpenMP are held to one thread (see :func:`single_threaded_libraries`:
    a 1e4-row fit took 62 against 51 ms with default threads on an idle
    2-core machine, 217 against 47 ms beside a busy process). Above, numba's
    parallel kernels take no more threads than the OpenMP limit in force,
    so that joblib's limits on its workers' inner threads (``n_jobs`` in
    ``GridSearchCV``, say) hold for them too; with ``hold_blas`` (every
    expert fitted by the engine, whose own kernels use the cores) BLAS is
    held to one thread as well: its threads, spinning after each call,
    slowed the numba kernels that followed 2-3x (a 1e5-row classifier fit
    10.7 against 4.6 s).
    """
    if n_rows < _PARALLEL_MIN_ROWS:
        with single_threaded_libraries():
            yield
        return
    if not NUMBA_AVAILABLE:  # pragma: no cover
        yield
        return
    if hold_blas:
        with single_threaded_blas(), fit_threads(n_rows):
            yield
        return
    with _ONE_OPENMP_THREAD.lock:
        libraries = _ONE_OPENMP_THREAD.libraries
    if libraries is None:
        from threadpoolctl import ThreadpoolController

        libraries = ThreadpoolController().select(user_api="openmp").lib_controllers
    limits = [lib.num_threads for lib in libraries]
    threads = numba.get_num_threads()
    allowed = min([threads, *limits]) if limits else threads
    numba.set_num_threads(max(1, allowed))
    try:
        yield
    finally:
        numba.set_num_threads(threads)


@contextmanager
def one_numba_thread():
    """Numba's parallel kernels on one thread, in the calling thread only.

    For work that is already spread over threads or processes (the Dask
    backend's chunk tasks): nested in it, the kernels' own threads would
    oversubscribe the cores. Numba's thread count is local to each thread,
    so that other threads keep theirs.
    """
    if not NUMBA_AVAILABLE:  # pragma: no cover
        yield
        return
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def n_threads():
    """Threads the parallel kernels use (numba's setting; 1 without numba)."""
    if NUMBA_AVAILABLE:
        return int(numba.get_num_threads())
    return 1  # pragma: no cover


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


def weighted_sq_residuals_numpy(Y, means, weights):
    """Each expert's weighted squared residuals and total weight.

    Parameters
    ----------
    Y : ndarray of shape (n, n_outputs)
    means : ndarray of shape (n, K, n_outputs)
    weights : ndarray of shape (n, K)

    Returns
    -------
    sq_resid : ndarray of shape (K, n_outputs)
        ``sum_i weights[i, k] (Y[i] - means[i, k]) ** 2``.
    weight_sum : ndarray of shape (K,)
        ``sum_i weights[i, k]``.
    """
    sq = np.einsum("nk,nko->ko", weights, (Y[:, None, :] - means) ** 2)
    return sq, weights.sum(axis=0)


def responsibilities_numpy(log_gate, log_prob):
    """Posterior expert probabilities and per-row log-likelihood.

    Returns ``(resp, row_ll)`` with ``resp[i, k] = g_ik p_ik / sum_j g_ij p_ij``
    and ``row_ll[i] = log sum_k g_ik p_ik``, computed in log space;
    responsibilities below ``RESPONSIBILITY_FLOOR`` are 0.
    """
    joint = log_gate + log_prob
    row_ll = logsumexp(joint, axis=1)
    dead = np.isneginf(row_ll)
    # a row no expert can explain has no finite posterior: spread it evenly
    row_ll_safe = np.where(dead, 0.0, row_ll)
    resp = np.exp(joint - row_ll_safe[:, None])
    resp[resp < RESPONSIBILITY_FLOOR] = 0.0
    resp[dead] = 1.0 / joint.shape[1]
    return resp, row_ll


def gaussian_responsibilities_numpy(log_gate, Y, means, variances):
    """Responsibilities and row log-likelihoods of Gaussian experts.

    :func:`responsibilities_numpy` of ``log_gate`` and
    :func:`gaussian_log_prob_numpy` of ``(Y, means, variances)``: the
    regressor's E-step, which the numba twin makes in one pass.
    """
    return responsibilities_numpy(
        log_gate, gaussian_log_prob_numpy(Y, means, variances)
    )


def gate_loss_numpy(logits, targets, sample_weight):
    """Weighted soft-target cross-entropy of a softmax gate.

    Returns ``(loss, dlogits)`` where ``loss = -sum_i w_i sum_k t_ik log g_ik``
    and ``dlogits[i, k] = w_i (g_ik - t_ik)`` is its gradient in the logits
    (the targets of each row sum to one).
    """
    return _loss_from_log_proba(log_softmax_numpy(logits), targets, sample_weight)


def weighted_cross_entropy(log_g, targets, sample_weight):
    """``-sum_i w_i sum_k t_ik log g_ik`` from log gate probabilities.

    One read of the two (n, K) arrays, no (n, K) temporary.
    """
    return -float(sample_weight @ np.einsum("ik,ik->i", targets, log_g))


def _loss_from_log_proba(log_g, targets, sample_weight, g=None):
    """``(loss, dlogits)`` of :func:`gate_loss_numpy` from log gate probabilities.

    ``g``: the probabilities themselves, where known (else ``exp(log_g)``).
    """
    loss = weighted_cross_entropy(log_g, targets, sample_weight)
    dlogits = sample_weight[:, None] * ((np.exp(log_g) if g is None else g) - targets)
    return loss, dlogits


def gate_objective_numpy(
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
    """Cross-entropy of the reference-category softmax gate and its gradient.

    The gate's logits are ``0`` for expert 0 and ``Xs @ theta[:-1] +
    theta[-1]`` for the others, with ``Xs = (X - mean) / scale``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Raw inputs, or already standardised ones when ``mean`` is None.
    mean, scale : ndarray of shape (d,) or None
        Standardisation of the inputs; None means ``X`` is ``Xs``.
    theta : ndarray of shape (d + 1, K - 1)
        Free block: coefficients of the standardised inputs, then intercepts.
    targets : ndarray of shape (n, K)
    sample_weight : ndarray of shape (n,)
    log_proba : ndarray of shape (n, K), default=None
        The gate's log-probabilities at ``theta``: filled in when given
        (``given=False``; EM's next E-step reads them instead of recomputing
        the gate), or read instead of computed (``given=True``; the E-step's,
        at the parameters the M-step starts from: no logits product then).
    given : bool, default=False
        Whether ``log_proba`` (and ``proba``, if not None) hold the values
        to use.
    proba : ndarray of shape (n, K), default=None
        The gate's probabilities at ``theta``, filled in or read alongside
        ``log_proba``: read, they spare the exponentials of a given
        evaluation.

    Returns
    -------
    loss : float
        ``-sum_i w_i sum_k t_ik log g_ik`` (no penalty).
    grad : ndarray of shape (d + 1, K - 1)
        Its gradient in ``theta``.
    """
    Xs = X if mean is None else (X - mean) / scale
    if given:
        log_g = log_proba
        g = np.exp(log_g) if proba is None else proba
    else:
        logits = np.zeros((X.shape[0], theta.shape[1] + 1))
        logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
        log_g = log_softmax_numpy(logits)
        g = np.exp(log_g)
        if log_proba is not None:
            log_proba[...] = log_g
        if proba is not None:
            proba[...] = g
    loss, dlogits = _loss_from_log_proba(log_g, targets, sample_weight, g)
    grad = np.empty_like(theta)
    grad[:-1] = Xs.T @ dlogits[:, 1:]
    grad[-1] = dlogits[:, 1:].sum(axis=0)
    return float(loss), grad


def gate_hessian_numpy(X, mean, scale, theta, sample_weight, stride=1):
    """Hessian of the gate's cross-entropy in ``theta`` (of :func:`gate_objective`).

    ``H = sum_i w_i (diag(g_i) - g_i g_i^T) (x) z_i z_i^T`` with ``z_i =
    (xs_i, 1)`` and ``g_i`` the free experts' gate probabilities, indexed
    like ``theta.ravel()`` (feature-major). It does not depend on the
    targets. Nearly all of the work is two matrix products per block of rows,
    ``B^T B`` with ``B_i = sqrt(w_i) z_i (x) g_i`` and ``Z^T [w g_k Z]_k``.

    Parameters
    ----------
    X, mean, scale, theta, sample_weight
        As in :func:`gate_objective_numpy`.
    stride : int, default=1
        Sum over every ``stride``-th row only (rows 0, stride, 2 stride, ...):
        an estimate of the whole sum once scaled by the ratio of weights.

    Returns
    -------
    hessian : ndarray of shape ((d + 1) * (K - 1), (d + 1) * (K - 1))
    """
    X, sample_weight = X[::stride], sample_weight[::stride]
    n, d = X.shape
    K1 = theta.shape[1]
    p = d + 1
    Z = np.empty((n, p))
    Z[:, :d] = X if mean is None else (X - mean) / scale
    Z[:, d] = 1.0
    logits = np.zeros((n, K1 + 1))
    logits[:, 1:] = Z @ theta
    g = np.exp(log_softmax_numpy(logits))[:, 1:]
    w = sample_weight
    B = (Z[:, :, None] * (g * np.sqrt(w)[:, None])[:, None, :]).reshape(n, -1)
    H = -(B.T @ B)
    blocks = H.reshape(p, K1, p, K1)
    for k in range(K1):
        blocks[:, k, :, k] += (Z * (w * g[:, k])[:, None]).T @ Z
    return H


def weighted_grams_numpy(X, x_shift, Y, weights, y_shift=None):
    """Weighted Gram matrices of ``Z = [X - x_shift, 1, Y - y_shift]`` for every expert.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    x_shift : ndarray of shape (d,)
    Y : ndarray of shape (n, q)
    weights : ndarray of shape (n, K)
    y_shift : ndarray of shape (q,), default=None
        None: 0.

    Returns
    -------
    grams : ndarray of shape (K, p, p), ``p = d + 1 + q``
        ``grams[k] = Z^T diag(weights[:, k]) Z``.
    """
    Y = Y if y_shift is None else Y - y_shift
    Z = np.hstack([X - x_shift, np.ones((X.shape[0], 1)), Y])
    return np.einsum("ik,ia,ib->kab", weights, Z, Z, optimize=True)


def em_pass_numpy(
    X,
    Y,
    sample_weight,
    gate_mean,
    gate_scale,
    theta,
    coef,
    intercept,
    variances,
    previous,
    x_shift,
    y_shift,
):
    """One pass over the rows for an EM iteration of linear experts.

    With the linear softmax gate at ``theta`` (standardised by ``gate_mean``
    and ``gate_scale``, as in :func:`gate_objective_numpy`) and linear
    Gaussian experts (means ``X @ coef + intercept``, ``coef`` of shape
    (d, K * q) expert-major, noise ``variances`` (K, q)), in one pass:

    - the gate's loss against the ``previous`` responsibilities,
      ``-sum_i w_i sum_k previous_ik log g_ik`` (the line search's test of a
      trial point; nan when ``previous`` is None);
    - the E-step: responsibilities and per-row log-likelihoods, as
      :func:`gaussian_responsibilities_numpy` gives them;
    - what the next M-step needs of them: the experts' Gram matrices of
      ``[X - x_shift, 1, Y - y_shift]`` weighted by ``w * resp``
      (:func:`weighted_grams_numpy`), the gate's own weighted sums
      ``sum_i w_i g_ik z_i`` (``z_i`` the standardised row and a 1; experts
      1..K-1), and the gate's loss against the new responsibilities.

    Returns
    -------
    resp : ndarray of shape (n, K)
    row_ll : ndarray of shape (n,)
    grams : ndarray of shape (K, p, p)
    gate_sums : ndarray of shape (d + 1, K - 1)
    scalars : tuple of float
        ``(loss against previous, loss against resp, log-likelihood)``, the
        log-likelihood ``sum_i w_i row_ll_i``.
    expert_ll : ndarray of shape (K,)
        Each expert's part of it, ``sum_i w_i resp_ik row_ll_i``.
    """
    n = X.shape[0]
    K, q = variances.shape
    w = sample_weight
    Xs = (X - gate_mean) / gate_scale
    logits = np.zeros((n, K))
    logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
    log_g = log_softmax_numpy(logits)
    loss_previous = np.nan
    if previous is not None:
        loss_previous = weighted_cross_entropy(log_g, previous, w)
    means = (X @ coef + intercept).reshape(n, K, q)
    resp, row_ll = gaussian_responsibilities_numpy(log_g, Y, means, variances)
    g = np.exp(log_g[:, 1:])
    g[g < RESPONSIBILITY_FLOOR] = 0.0
    wg = w[:, None] * g
    gate_sums = np.vstack([Xs.T @ wg, wg.sum(axis=0)])
    grams = weighted_grams_numpy(X, x_shift, Y, resp * w[:, None], y_shift)
    scalars = (
        loss_previous,
        weighted_cross_entropy(log_g, resp, w),
        float(w @ row_ll),
    )
    return resp, row_ll, grams, gate_sums, scalars, (w * row_ll) @ resp


def linear_posterior_numpy(
    X, Y, gate_mean, gate_scale, theta, coef, intercept, variances
):
    """The E-step of :func:`em_pass_numpy` alone: responsibilities and
    per-row log-likelihoods at the linear gate and linear Gaussian experts
    (the arguments as there), without the sums for an M-step."""
    n = X.shape[0]
    K, q = variances.shape
    logits = np.zeros((n, K))
    logits[:, 1:] = ((X - gate_mean) / gate_scale) @ theta[:-1] + theta[-1]
    means = (X @ coef + intercept).reshape(n, K, q)
    return gaussian_responsibilities_numpy(
        log_softmax_numpy(logits), Y, means, variances
    )


def mlp_gate_objective_numpy(flat, shapes, Xs, targets, sample_weight, alpha):
    """Soft-target cross-entropy of a softmax gating network, and its gradient.

    The network (:class:`~skmoe.SoftmaxMLPGate`) has tanh hidden layers and
    a linear output layer whose expert 0 logit is 0; its layers are the
    consecutive blocks of ``flat`` of shapes ``shapes`` (fan-in + 1, fan-out),
    the weights then the bias row. Returns the summed weighted cross-entropy
    plus ``alpha / 2`` times the squared weights (not the biases), and its
    gradient in ``flat``.
    """
    layers, start = [], 0
    for rows, cols in shapes:
        layers.append(flat[start : start + rows * cols].reshape(rows, cols))
        start += rows * cols
    activations = [Xs]
    a = Xs
    for layer in layers[:-1]:
        a = np.tanh(a @ layer[:-1] + layer[-1])
        activations.append(a)
    out = layers[-1]
    logits = np.zeros((Xs.shape[0], out.shape[1] + 1))
    logits[:, 1:] = a @ out[:-1] + out[-1]
    loss, dlogits = gate_loss_numpy(logits, targets, sample_weight)
    grads = [None] * len(layers)
    delta = dlogits[:, 1:]
    for j in range(len(layers) - 1, -1, -1):
        W = layers[j][:-1]
        a = activations[j]
        grad = np.empty_like(layers[j])
        grad[:-1] = a.T @ delta + alpha * W
        grad[-1] = delta.sum(axis=0)
        grads[j] = grad
        loss += 0.5 * alpha * np.sum(W * W)
        if j > 0:
            # tanh' = 1 - tanh^2
            delta = (delta @ W.T) * (1.0 - a * a)
    return float(loss), np.concatenate([g.ravel() for g in grads])


# Smallest reciprocal condition number of a linear expert's system that
# linear_experts_from_grams solves itself (see there).
_EXPERT_RCOND = 1e3 * np.finfo(np.float64).eps

# L-BFGS of the gating network in numba: pairs kept, most step halvings,
# the gradient's max-norm at which it stops (L-BFGS-B's pgtol as skmoe sets
# it) and the smallest relative curvature of a kept pair.
_LBFGS_MEMORY = 10
_LBFGS_HALVINGS = 30
_LBFGS_GTOL = 1e-10
_LBFGS_EPS = 2.2e-16


def mlp_gate_minimize_numpy(
    flat, shapes, Xs, targets, sample_weight, alpha, *, max_iter, tol
):
    """Minimise the gating network's mean objective from ``flat``.

    The objective is :func:`mlp_gate_objective_numpy` divided by the total
    weight (so that ``tol`` does not depend on the number of rows),
    minimised by scipy's L-BFGS-B with ``ftol=tol``. Its numba twin runs its
    own L-BFGS on the numba objective: the same minimum where the objective
    is convex (no hidden layers), a descent from the same start otherwise.

    Returns
    -------
    flat : ndarray
        The last iterate.
    n_iter : int
        Iterations taken.
    """
    total = float(np.sum(sample_weight))
    total = total if total > 0 else 1.0

    def objective(theta):
        loss, grad = mlp_gate_objective_numpy(
            theta, shapes, Xs, targets, sample_weight, alpha
        )
        return loss / total, grad / total

    options = {"maxiter": max_iter, "ftol": tol, "gtol": _LBFGS_GTOL}
    result = minimize(objective, flat, jac=True, method="L-BFGS-B", options=options)
    return result.x, int(result.nit)


def linear_expert_system(G, x_shift, alpha, fit_intercept):
    """One linear expert's normal equations from its Gram matrix: ``(A, B, dx, dy)``.

    ``G`` is the expert's weighted Gram matrix of ``[X - x_shift, 1, Y -
    y_shift]``. With an intercept its blocks are downdated to the expert's
    own weighted means ``dx``, ``dy`` (of ``X - x_shift`` and ``Y -
    y_shift``); without one the model lives at the origin, not at
    ``x_shift``, and the blocks are moved there (``dx``, ``dy`` zero). The
    ridge ``alpha`` goes on the diagonal. ``A coef = B`` then gives the
    coefficients, shape (d, q).
    """
    d = x_shift.shape[0]
    A = G[:d, :d]
    A = 0.5 * (A + A.T)  # symmetric in exact arithmetic
    B = G[:d, d + 1 :].copy()
    x_sum, w_sum, wy = G[:d, d], G[d, d], G[d, d + 1 :]  # sum w x0, sum w, sum w y0
    if fit_intercept:
        dx, dy = x_sum / w_sum, wy / w_sum
        A = A - w_sum * np.outer(dx, dx)
        B = B - w_sum * np.outer(dx, dy)
    else:
        dx, dy = np.zeros(d), np.zeros(wy.shape[0])
        A = A + np.outer(x_shift, x_sum) + np.outer(x_sum, x_shift)
        A = A + w_sum * np.outer(x_shift, x_shift)
        B = B + np.outer(x_shift, wy)
    A = A + alpha * np.eye(d)
    return A, B, dx, dy


def _linear_experts_outputs(grams, d):
    """linear_experts_from_grams' outputs before any expert is solved."""
    K, p, _ = grams.shape
    q = p - d - 1
    return (
        np.zeros((K, q, d)),
        np.zeros((K, q)),
        np.full((K, q), np.inf),
        np.zeros(K, dtype=bool),
    )


def linear_experts_from_grams_numpy(
    grams, x_shift, y_shift, alphas, fit_intercept, cancellation
):
    """Every linear expert solved from its Gram matrix, and its noise variances.

    ``grams`` (K, p, p) are the experts' weighted Gram matrices of ``[X -
    x_shift, 1, Y - y_shift]``; ``alphas`` (K,) their ridge penalties and
    ``fit_intercept`` (K,) bool. Each expert's normal equations are
    :func:`linear_expert_system`'s, solved by Cholesky, and its variances
    those of ``residual_variances_from_grams`` (``skmoe._em._stats``). Left
    to the caller (``ok`` False): an expert without weight, one that
    ``plain_grams`` would not pass as it is (a column whose centring on the
    expert's mean keeps at most ``cancellation`` of it, or whose spread is
    round-off), and one whose system is not positive definite or whose
    reciprocal 1-norm condition number (from the computed inverse) is below
    ``_EXPERT_RCOND`` (1000 machine epsilons). The caller's own solve takes
    Cholesky down to one epsilon (LAPACK's estimate) and lstsq below it;
    the margin keeps every system near that line on the caller's side,
    where the inverse computed here is least accurate.

    Returns
    -------
    coef : ndarray of shape (K, q, d)
    intercept : ndarray of shape (K, q)
    variances : ndarray of shape (K, q)
    ok : ndarray of shape (K,), bool
    """
    d = x_shift.shape[0]
    coef, intercept, variances, ok = _linear_experts_outputs(grams, d)
    eps = np.finfo(np.float64).eps
    for k in range(grams.shape[0]):
        G = grams[k]
        w = G[d, d]
        if not w > 0:
            continue
        raw = np.diagonal(G)[:d]
        dx = G[:d, d] / w
        centred = raw - w * dx * dx
        second = raw + 2 * x_shift * G[:d, d] + w * x_shift**2
        tests = (centred > cancellation * raw) & (centred > (8 * eps) ** 2 * second)
        if not np.all(tests):
            continue
        A, B, dx, dy = linear_expert_system(G, x_shift, alphas[k], fit_intercept[k])
        try:
            L = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            continue
        inverse = np.linalg.inv(L)
        inverse = inverse.T @ inverse
        rcond = 1.0 / (np.abs(A).sum(axis=0).max() * np.abs(inverse).sum(axis=0).max())
        if not rcond >= _EXPERT_RCOND:
            continue
        b = np.linalg.solve(L.T, np.linalg.solve(L, B))  # (d, q)
        if fit_intercept[k]:
            intercept[k] = dy - (dx + x_shift) @ b + y_shift
        coef[k] = b.T
        # residual_variances_from_grams, about the expert's own means
        mx, my = G[:d, d] / w, G[d, d + 1 :] / w
        A2 = G[:d, :d] - w * np.outer(mx, mx)
        B2 = G[:d, d + 1 :] - w * np.outer(mx, my)
        S = np.diagonal(G)[d + 1 :] - w * my * my
        c = (my + y_shift) - intercept[k] - b.T @ (mx + x_shift)
        rss = S - 2 * np.einsum("do,do->o", b, B2)
        rss = rss + np.einsum("do,de,eo->o", b, A2, b) + w * c * c
        variances[k] = np.maximum(rss, 0.0) / w
        ok[k] = True
    return coef, intercept, variances, ok


def weighted_lloyd_numpy(Z, sample_weight, centers, *, max_iter, tol):
    """Weighted k-means by Lloyd's iterations from ``centers``, as scikit-learn's.

    The steps of ``KMeans(init=centers, n_init=1, algorithm="lloyd")``: each
    iteration gives every row its nearest centre (the first of equals) and
    moves each centre to its rows' weighted mean; it stops when no label
    changes, or when the centres' summed squared shift is at most ``tol``
    (then the labels are made again from the last centres), or after
    ``max_iter`` iterations. scikit-learn relocates the centre of a cluster
    left without weight; here the run stops and says so (``ok`` False), for
    the caller to hand the problem to scikit-learn. The distances are the
    squared differences themselves, where scikit-learn takes ``|c|^2 - 2 x.c``
    on centred rows: a row (nearly) equidistant from two centres can go the
    other way, so on data with ties (values on a grid) the clusters can
    differ from KMeans's; on continuous data they are the same.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
    centers : ndarray of shape (n_clusters, n_features)
    n_iter : int
    ok : bool
    """
    Z = np.asarray(Z, dtype=np.float64)
    centers = np.array(centers, dtype=np.float64)
    K = centers.shape[0]

    def nearest(centers):
        # one (n, K) array of distances, a centre at a time (not (n, K, d))
        dist = np.stack([((Z - c) ** 2).sum(axis=1) for c in centers], axis=1)
        return np.argmin(dist, axis=1)

    labels_old = np.full(Z.shape[0], -1)
    strict, n_iter = False, 0
    for n_iter in range(1, max_iter + 1):
        labels = nearest(centers)
        mass = np.bincount(labels, weights=sample_weight, minlength=K)
        if not np.all(mass > 0):
            return labels, centers, n_iter, False
        sums = np.stack(
            [
                np.bincount(labels, weights=sample_weight * Z[:, j], minlength=K)
                for j in range(Z.shape[1])
            ],
            axis=1,
        )
        new = sums / mass[:, None]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if np.array_equal(labels, labels_old):
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:
        labels = nearest(centers)
    return labels, centers, n_iter, True


# ---------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------

if NUMBA_AVAILABLE:
    # numpy's error model: a division by zero gives inf or nan, as in the
    # NumPy twins, instead of a check that raises, which kept every loop
    # with a division from vectorising (the fused pass 13% slower at 1e4 x
    # 5 x 3, the gate's tanh 3x)
    _njit = numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    _njit_parallel_flags = numba.njit(
        cache=True, fastmath=False, nogil=True, parallel=True, error_model="numpy"
    )

    def _njit_parallel(func):
        """The parallel build of ``func``, cached apart from its serial build.

        Numba names a function's on-disk cache after its qualified name and
        first line, and keys the entries by signature, not by the compile
        flags: a serial and a parallel dispatcher over one Python function
        share the entries, and the one compiled first is what both load (the
        cached "parallel" kernels ran on one core). The parallel build is
        therefore made from a copy of the function under its own name;
        ``tests/test_kernels.py`` checks that it runs on several cores from a
        warm cache.
        """
        twin = types.FunctionType(
            func.__code__,
            func.__globals__,
            func.__name__ + "_parallel",
            func.__defaults__,
            func.__closure__,
        )
        twin.__qualname__ = func.__qualname__ + "_parallel"
        twin.__module__ = func.__module__
        return _njit_parallel_flags(twin)

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

    def _normalise_joint_row(resp, row_ll, i):
        # resp[i] holds log g_ik + log p_ik: turn it into the posterior and
        # write the row's log-likelihood
        K = resp.shape[1]
        m = -np.inf
        for k in range(K):
            if resp[i, k] > m:
                m = resp[i, k]
        if m == -np.inf:
            # every expert gives the row zero density: no finite posterior
            for k in range(K):
                resp[i, k] = 1.0 / K
            row_ll[i] = -np.inf
            return
        s = 0.0
        for k in range(K):
            e = math.exp(resp[i, k] - m)
            resp[i, k] = e
            s += e
        inv_s = 1.0 / s  # one division per row, not per expert
        for k in range(K):
            r = resp[i, k] * inv_s
            # see RESPONSIBILITY_FLOOR
            resp[i, k] = r if r >= RESPONSIBILITY_FLOOR else 0.0
        row_ll[i] = m + math.log(s)

    _normalise_joint_row = _njit(_normalise_joint_row)

    def _responsibilities_rows(log_gate, log_prob, resp, row_ll):
        n, K = log_gate.shape
        for i in numba.prange(n):
            for k in range(K):
                resp[i, k] = log_gate[i, k] + log_prob[i, k]
            _normalise_joint_row(resp, row_ll, i)

    def _gaussian_responsibilities_rows(log_gate, Y, means, variances, resp, row_ll):
        # the two kernels above in one pass: no (n, K) array of log-densities
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
                resp[i, k] = log_gate[i, k] - 0.5 * (q + log_norm[k])
            _normalise_joint_row(resp, row_ll, i)

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

    def _gate_objective_blocks(
        X, mean, inv_scale, theta, targets, weight, parts, log_proba, proba, given
    ):
        # parts[b, :d + 1, :] collects block b's gradient, parts[b, d + 1, 0]
        # its loss. Each block of _GATE_BLOCK_ROWS goes in sub-blocks of
        # _GATE_SUB_ROWS that stay in cache: their rows standardised, (x -
        # mean) * (1 / scale), the two products (logits and gradient) left to
        # BLAS and the exponentials to the vectorised exp (libm's scalar exp
        # made this kernel 2.5x slower). With ``given`` the log-probabilities
        # are read from ``log_proba`` (no logits product), and the
        # probabilities from ``proba`` if it has rows (no exponentials
        # either); else both are written there, if they have rows
        n, d = X.shape
        K1 = theta.shape[1]
        K = K1 + 1
        keep = log_proba.shape[0] > 0
        keep_proba = proba.shape[0] > 0
        coef = np.ascontiguousarray(theta[:d])
        sub = _GATE_SUB_ROWS
        for b in numba.prange(parts.shape[0]):
            xs_block = np.empty((sub, d))
            dlogit_block = np.empty((sub, K1))
            exponents = np.empty(sub * K)
            powers = np.empty(sub * K)
            scratch = np.empty(sub * K)
            grad = parts[b]
            loss = 0.0
            lo = b * _GATE_BLOCK_ROWS
            hi = min(n, lo + _GATE_BLOCK_ROWS)
            for start in range(lo, hi, sub):
                m = min(hi, start + sub) - start
                xs = xs_block[:m]
                dlogit = dlogit_block[:m]
                if given:
                    for r in range(m):
                        i = start + r
                        w = weight[i]
                        for j in range(d):
                            xs[r, j] = (X[i, j] - mean[j]) * inv_scale[j]
                        acc = targets[i, 0] * log_proba[i, 0]
                        for k in range(K1):
                            lg = log_proba[i, k + 1]
                            acc += targets[i, k + 1] * lg
                            g = proba[i, k + 1] if keep_proba else math.exp(lg)
                            dlogit[r, k] = w * (g - targets[i, k + 1])
                            grad[d, k] += dlogit[r, k]
                        loss -= w * acc
                else:
                    _gate_block_exponents(
                        X, start, m, mean, inv_scale, coef, theta[d], xs, exponents
                    )
                    _exp_nonpositive(exponents, powers, scratch, m * K)
                    for r in range(m):
                        i = start + r
                        w = weight[i]
                        total = 0.0
                        for k in range(K):
                            total += powers[r * K + k]
                        log_total = math.log(total)
                        inv_total = 1.0 / total
                        acc = 0.0
                        for k in range(K):
                            lg = exponents[r * K + k] - log_total
                            acc += targets[i, k] * lg
                            g = powers[r * K + k] * inv_total
                            if keep:
                                log_proba[i, k] = lg
                            if keep_proba:
                                proba[i, k] = g
                            if k > 0:
                                # d loss / d logit_k = w (g_k - t_k)
                                dlogit[r, k - 1] = w * (g - targets[i, k])
                                grad[d, k - 1] += dlogit[r, k - 1]
                        loss -= w * acc
                grad[:d] += np.dot(xs.T, dlogit)
            grad[d + 1, 0] = loss

    def _gate_hessian_blocks(
        X, mean, inv_scale, theta, weight, stride, block, outer_parts, gram_parts
    ):
        # per part of _GATE_BLOCK_ROWS of the strided rows, in blocks of
        # ``block`` rows held transposed: the rows' z (standardised, then 1)
        # and gate probabilities g, then the tiled kernel's upper triangles
        # of B^T B (outer_parts) with B[r, j K1 + k] = sqrt(w) z_j g_k, and
        # of Z^T diag(w g_k) Z for every k (gram_parts)
        n, d = X.shape
        p = d + 1
        K1 = theta.shape[1]
        n_rows = (n + stride - 1) // stride
        for part in numba.prange(outer_parts.shape[0]):
            ZT = np.zeros((gram_parts.shape[2], block))
            WT = np.empty((K1, block))
            BT = np.zeros((outer_parts.shape[2], block))
            ones = np.ones((1, block))
            Z = np.empty((block, p))
            g = np.empty(K1)
            lo = part * _GATE_BLOCK_ROWS
            hi = min(n_rows, lo + _GATE_BLOCK_ROWS)
            for start in range(lo, hi, block):
                m = min(hi, start + block) - start
                for r in range(m):
                    i = (start + r) * stride
                    for j in range(d):
                        Z[r, j] = (X[i, j] - mean[j]) * inv_scale[j]
                    Z[r, d] = 1.0
                logit = np.dot(Z[:m], theta)
                for r in range(m):
                    top = 0.0
                    for k in range(K1):
                        if logit[r, k] > top:
                            top = logit[r, k]
                    total = math.exp(-top)
                    for k in range(K1):
                        g[k] = math.exp(logit[r, k] - top)
                        total += g[k]
                    w = weight[(start + r) * stride]
                    root_w = math.sqrt(w)
                    for k in range(K1):
                        g[k] /= total
                        WT[k, r] = w * g[k]
                    for j in range(p):
                        ZT[j, r] = Z[r, j]
                        for k in range(K1):
                            BT[j * K1 + k, r] = root_w * g[k] * Z[r, j]
                _gram_block_tiles(BT, ones, m, outer_parts[part])
                _gram_block_tiles(ZT, WT, m, gram_parts[part])

    def _weighted_sq_residuals_blocks(Y, means, weights, parts):
        # parts[b, k, :q] collects block b's weighted squared residuals of
        # expert k, parts[b, k, q] its weight: fixed blocks, so the sums do
        # not depend on the number of threads
        n, K, q = means.shape
        for b in numba.prange(parts.shape[0]):
            start = b * _GATE_BLOCK_ROWS
            stop = min(n, start + _GATE_BLOCK_ROWS)
            acc = parts[b]
            for i in range(start, stop):
                for k in range(K):
                    w = weights[i, k]
                    for o in range(q):
                        r = Y[i, o] - means[i, k, o]
                        acc[k, o] += w * r * r
                    acc[k, q] += w

    def _gram_block_tiles(ZT, WT, m, G):
        # G[k] += upper tiles of ZT[:, :m] diag(WT[k, :m]) ZT[:, :m]^T, the
        # block held transposed (columns of Z by rows) so that each tile's
        # sixteen sums run down contiguous rows, which LLVM vectorises once
        # it may reassociate them (this function's fastmath flags; the sums
        # still do not depend on the threads)
        P = ZT.shape[0]
        K = WT.shape[0]
        for k in range(K):
            wk = WT[k]
            for a in range(0, P, 4):
                for c in range(a, P, 4):
                    s00 = s01 = s02 = s03 = 0.0
                    s10 = s11 = s12 = s13 = 0.0
                    s20 = s21 = s22 = s23 = 0.0
                    s30 = s31 = s32 = s33 = 0.0
                    for r in range(m):
                        w = wk[r]
                        u0 = ZT[a, r] * w
                        u1 = ZT[a + 1, r] * w
                        u2 = ZT[a + 2, r] * w
                        u3 = ZT[a + 3, r] * w
                        z0 = ZT[c, r]
                        z1 = ZT[c + 1, r]
                        z2 = ZT[c + 2, r]
                        z3 = ZT[c + 3, r]
                        s00 += u0 * z0
                        s01 += u0 * z1
                        s02 += u0 * z2
                        s03 += u0 * z3
                        s10 += u1 * z0
                        s11 += u1 * z1
                        s12 += u1 * z2
                        s13 += u1 * z3
                        s20 += u2 * z0
                        s21 += u2 * z1
                        s22 += u2 * z2
                        s23 += u2 * z3
                        s30 += u3 * z0
                        s31 += u3 * z1
                        s32 += u3 * z2
                        s33 += u3 * z3
                    Gk = G[k]
                    Gk[a, c] += s00
                    Gk[a, c + 1] += s01
                    Gk[a, c + 2] += s02
                    Gk[a, c + 3] += s03
                    Gk[a + 1, c] += s10
                    Gk[a + 1, c + 1] += s11
                    Gk[a + 1, c + 2] += s12
                    Gk[a + 1, c + 3] += s13
                    Gk[a + 2, c] += s20
                    Gk[a + 2, c + 1] += s21
                    Gk[a + 2, c + 2] += s22
                    Gk[a + 2, c + 3] += s23
                    Gk[a + 3, c] += s30
                    Gk[a + 3, c + 1] += s31
                    Gk[a + 3, c + 2] += s32
                    Gk[a + 3, c + 3] += s33

    # not inlined: an inlined body would take its caller's strict flags
    _gram_block_tiles = numba.njit(
        cache=True, fastmath={"reassoc", "contract"}, nogil=True
    )(_gram_block_tiles)

    def _gram_block_row(X, x_shift, Y, y_shift, i, r, ZT):
        # row i of Z = [X - x_shift, 1, Y - y_shift] into column r of ZT
        d = X.shape[1]
        for j in range(d):
            ZT[j, r] = X[i, j] - x_shift[j]
        ZT[d, r] = 1.0
        for o in range(Y.shape[1]):
            ZT[d + 1 + o, r] = Y[i, o] - y_shift[o]

    _gram_block_row = numba.njit(
        cache=True, fastmath=False, nogil=True, inline="always"
    )(_gram_block_row)

    def _weighted_grams_parts(X, x_shift, Y, y_shift, weights, block, parts):
        # parts[j, k] collects the upper tiles of expert k's Gram matrix over
        # the rows of part j, fixed ranges of _GRAM_PART_ROWS rows, so that
        # the sum does not depend on the number of threads; within a part
        # the rows go in blocks of ``block`` rows, transposed into ZT and WT
        # (the padding columns of ZT stay 0)
        n = X.shape[0]
        K = weights.shape[1]
        P = parts.shape[2]
        for part in numba.prange(parts.shape[0]):
            ZT = np.zeros((P, block))
            WT = np.empty((K, block))
            lo = part * _GRAM_PART_ROWS
            hi = min(n, lo + _GRAM_PART_ROWS)
            for start in range(lo, hi, block):
                m = min(hi, start + block) - start
                for r in range(m):
                    i = start + r
                    _gram_block_row(X, x_shift, Y, y_shift, i, r, ZT)
                    for k in range(K):
                        WT[k, r] = weights[i, k]
                _gram_block_tiles(ZT, WT, m, parts[part])

    def _exp_nonpositive(x, out, scratch, n):
        # out[:n] = exp(x[:n]) for x <= 0 (NaN stays NaN), to within one ulp
        # of libm's, in three loops that vectorise (libm's scalar exp does
        # not: 4.4 against 0.8 ns an element, in cache). exp(x) = 2^t exp(r)
        # with t = round(x / ln 2) (the 1.5 * 2^52 shift rounds to nearest)
        # and |r| <= ln(2) / 2, exp(r) by its Taylor polynomial of degree
        # 13, 2^t built in the exponent bits. Below -700 the argument is
        # clamped: exp(-700) = 1e-304, as good as 0 for every use here
        for i in range(n):
            v = x[i]
            v = v if not (v < -700.0) else -700.0
            t = (v * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0
            r = v - t * 0.6931471803691238 - t * 1.9082149292705877e-10
            e = 1.6059043836821613e-10
            e = e * r + 2.08767569878681e-09
            e = e * r + 2.505210838544172e-08
            e = e * r + 2.755731922398589e-07
            e = e * r + 2.7557319223985893e-06
            e = e * r + 2.48015873015873e-05
            e = e * r + 0.0001984126984126984
            e = e * r + 0.001388888888888889
            e = e * r + 0.008333333333333333
            e = e * r + 0.041666666666666664
            e = e * r + 0.16666666666666666
            e = e * r + 0.5
            e = e * r + 1.0
            out[i] = e * r + 1.0
            scratch[i] = t + 1023.0
        bits = scratch.view(np.int64)
        for i in range(n):
            bits[i] = np.int64(scratch[i]) << 52
        powers = bits.view(np.float64)
        for i in range(n):
            out[i] *= powers[i]

    _exp_nonpositive = numba.njit(
        cache=True, fastmath=False, nogil=True, error_model="numpy", inline="always"
    )(_exp_nonpositive)

    def _gate_block_exponents(
        X, start, m, mean, inv_scale, gate_coef, bias, xs, exponents
    ):
        # rows start .. start + m of X standardised into xs, and the linear
        # gate's logits there less each row's top (expert 0's logit 0 the
        # reference) into the flat exponents, for the vectorised exp
        d = X.shape[1]
        K1 = gate_coef.shape[1]
        K = K1 + 1
        for r in range(m):
            for j in range(d):
                xs[r, j] = (X[start + r, j] - mean[j]) * inv_scale[j]
        logit = np.dot(xs, gate_coef)
        for r in range(m):
            top = 0.0
            for k in range(K1):
                v = logit[r, k] + bias[k]
                logit[r, k] = v
                if v > top:
                    top = v
            exponents[r * K] = -top
            for k in range(K1):
                exponents[r * K + k + 1] = logit[r, k] - top

    _gate_block_exponents = numba.njit(
        cache=True, fastmath=False, nogil=True, inline="always"
    )(_gate_block_exponents)

    def _posterior_row_from_powers(powers, r, K, best, resp, row_ll, i):
        # block row r's exponentials of its joint log-densities less their
        # maximum ``best``: row i's posterior and log-likelihood
        if best == -np.inf:
            # no expert explains the row: no finite posterior
            for k in range(K):
                resp[i, k] = 1.0 / K
            row_ll[i] = -np.inf
            return
        total = 0.0
        for k in range(K):
            total += powers[r * K + k]
        inv_total = 1.0 / total
        for k in range(K):
            h = powers[r * K + k] * inv_total
            resp[i, k] = h if h >= RESPONSIBILITY_FLOOR else 0.0
        row_ll[i] = best + math.log(total)

    _posterior_row_from_powers = numba.njit(
        cache=True, fastmath=False, nogil=True, inline="always"
    )(_posterior_row_from_powers)

    def _gaussian_norms(variances):
        # each expert's Gaussian log-normaliser q log(2 pi) + sum log var
        # and its inverse variances
        K, q = variances.shape
        log_norm = np.empty(K)
        inv_variances = np.empty((K, q))
        for k in range(K):
            acc = q * _LOG_2PI
            for o in range(q):
                acc += math.log(variances[k, o])
                inv_variances[k, o] = 1.0 / variances[k, o]
            log_norm[k] = acc
        return log_norm, inv_variances

    _gaussian_norms = numba.njit(
        cache=True, fastmath=False, nogil=True, inline="always"
    )(_gaussian_norms)

    def _joint_row_exponents(
        Y, i, means, r, intercept, inv_variances, log_norm, log_g, exponents
    ):
        # block row r's joint log-densities log g_k + log N(y_i; mean, var)
        # less their maximum into the flat exponents; returns that maximum
        K, q = inv_variances.shape
        best = -np.inf
        for k in range(K):
            quad = 0.0
            for o in range(q):
                res = Y[i, o] - means[r, k * q + o] - intercept[k * q + o]
                quad += res * res * inv_variances[k, o]
            v = log_g[r, k] - 0.5 * (quad + log_norm[k])
            exponents[r * K + k] = v
            if v > best:
                best = v
        for k in range(K):
            exponents[r * K + k] -= best
        return best

    _joint_row_exponents = numba.njit(
        cache=True, fastmath=False, nogil=True, inline="always"
    )(_joint_row_exponents)

    def _em_pass_parts(
        X,
        Y,
        weight,
        products,
        offsets,
        variances,
        previous,
        x_shift,
        y_shift,
        block,
        resp,
        row_ll,
        gram_parts,
        sum_parts,
        scalar_parts,
    ):
        # the parts of _weighted_grams_parts, each in blocks of ``block`` rows
        # held transposed (a row of each buffer per column or expert, the
        # block's rows along it), so that every step of the E-step is a loop
        # down the rows that LLVM vectorises (row by row, with K-long inner
        # loops, the E-step's part took 1.7x as long at 1e6 x 20 x 8, 1.75x
        # at 1e6 x 5 x 3). One BLAS product gives the gate's
        # logits and the experts' means at once: ``products`` (K - 1 + K q,
        # d) and ``offsets`` act on X - x_shift (the wrapper folds the gate's
        # standardisation into them). The gate's sums come back unscaled,
        # sum_i w_i g_ik (x_i - x_shift), with the masses sum_i w_i g_ik in
        # sum_parts' last row; ``previous`` has no rows when there is none.
        n, d = X.shape
        K, q = variances.shape
        K1 = K - 1
        has_previous = previous.shape[0] > 0
        log_norm, inv_variances = _gaussian_norms(variances)
        B = block
        for part in numba.prange(gram_parts.shape[0]):
            G = gram_parts[part]
            S = sum_parts[part]
            ZT = np.zeros((gram_parts.shape[2], B))
            WT = np.empty((K, B))
            WG = np.zeros((B, K1))
            # zeros: a last block's unused columns stay finite
            exponents = np.zeros(K * B)
            powers = np.empty(K * B)
            scratch = np.empty(K * B)
            E = exponents.reshape((K, B))
            Pw = powers.reshape((K, B))
            log_g = np.empty((K, B))
            top = np.empty(B)
            inv_total = np.empty(B)
            w = np.empty(B)
            # running sums down the rows, one slot per row of the block (no
            # reassociation needed to vectorise them), summed at the end
            mass = np.zeros((K1, B))
            expert_ll = np.zeros((K, B))
            lanes = np.zeros((3, B))  # loss against previous, loss, ll
            lo = part * _GRAM_PART_ROWS
            hi = min(n, lo + _GRAM_PART_ROWS)
            for start in range(lo, hi, B):
                m = min(hi, start + B) - start
                for r in range(m):
                    i = start + r
                    w[r] = weight[i]
                    _gram_block_row(X, x_shift, Y, y_shift, i, r, ZT)
                if m < B:
                    # the last block's unused columns: zero rows for BLAS
                    for j in range(ZT.shape[0]):
                        for r in range(m, B):
                            ZT[j, r] = 0.0
                    for r in range(m, B):
                        for k in range(K1):
                            WG[r, k] = 0.0
                LM = np.dot(products, ZT[:d])
                # the gate's log-softmax, expert 0 the reference (logit 0)
                for r in range(m):
                    top[r] = 0.0
                for k in range(K1):
                    c = offsets[k]
                    for r in range(m):
                        v = LM[k, r] + c
                        LM[k, r] = v
                        top[r] = v if v > top[r] else top[r]
                for r in range(m):
                    E[0, r] = -top[r]
                for k in range(K1):
                    for r in range(m):
                        E[k + 1, r] = LM[k, r] - top[r]
                _exp_nonpositive(exponents, powers, scratch, K * B)
                for r in range(m):
                    inv_total[r] = Pw[0, r]
                for k in range(1, K):
                    for r in range(m):
                        inv_total[r] += Pw[k, r]
                for r in range(m):
                    # top now holds the log-normaliser less the top logit
                    top[r] = math.log(inv_total[r])
                    inv_total[r] = 1.0 / inv_total[r]
                for k in range(K):
                    for r in range(m):
                        log_g[k, r] = E[k, r] - top[r]
                for k in range(K1):
                    for r in range(m):
                        g = Pw[k + 1, r] * inv_total[r]
                        v = w[r] * g if g >= RESPONSIBILITY_FLOOR else 0.0
                        WG[r, k] = v
                        mass[k, r] += v
                if has_previous:
                    for k in range(K):
                        for r in range(m):
                            lanes[0, r] -= w[r] * previous[start + r, k] * log_g[k, r]
                # the E-step's joint log-densities, less each row's best
                for r in range(m):
                    top[r] = -np.inf
                for k in range(K):
                    if q == 1:
                        # one output: a loop down the rows with nothing
                        # inside (6-10% of the pass, paired, against the
                        # general loop below)
                        c = offsets[K1 + k]
                        h = inv_variances[k, 0]
                        for r in range(m):
                            res = Y[start + r, 0] - (LM[K1 + k, r] + c)
                            v = log_g[k, r] - 0.5 * (res * res * h + log_norm[k])
                            E[k, r] = v
                            top[r] = v if v > top[r] else top[r]
                        continue
                    for r in range(m):
                        quad = 0.0
                        for o in range(q):
                            res = Y[start + r, o] - (
                                LM[K1 + k * q + o, r] + offsets[K1 + k * q + o]
                            )
                            quad += res * res * inv_variances[k, o]
                        v = log_g[k, r] - 0.5 * (quad + log_norm[k])
                        E[k, r] = v
                        top[r] = v if v > top[r] else top[r]
                for k in range(K):
                    for r in range(m):
                        # a row no expert explains (best -inf) gives nan here
                        # and is set apart below
                        E[k, r] -= top[r]
                _exp_nonpositive(exponents, powers, scratch, K * B)
                for r in range(m):
                    inv_total[r] = Pw[0, r]
                for k in range(1, K):
                    for r in range(m):
                        inv_total[r] += Pw[k, r]
                for r in range(m):
                    i = start + r
                    if top[r] == -np.inf:
                        row_ll[i] = -np.inf
                        inv_total[r] = np.nan
                    else:
                        row_ll[i] = top[r] + math.log(inv_total[r])
                        inv_total[r] = 1.0 / inv_total[r]
                for k in range(K):
                    for r in range(m):
                        h = Pw[k, r] * inv_total[r]
                        h = h if h >= RESPONSIBILITY_FLOOR else 0.0
                        if inv_total[r] != inv_total[r]:
                            # no finite posterior: uniform
                            h = 1.0 / K
                        Pw[k, r] = h
                        WT[k, r] = w[r] * h
                        lanes[1, r] -= w[r] * h * log_g[k, r]
                        expert_ll[k, r] += w[r] * row_ll[start + r] * h
                for r in range(m):
                    lanes[2, r] += w[r] * row_ll[start + r]
                    for k in range(K):
                        resp[start + r, k] = Pw[k, r]
                S[:d] += np.dot(ZT[:d], WG)
                _gram_block_tiles(ZT, WT, m, G)
            for k in range(K1):
                S[d, k] = mass[k].sum()
            for j in range(3):
                scalar_parts[part, j] = lanes[j].sum()
            for k in range(K):
                scalar_parts[part, 3 + k] = expert_ll[k].sum()

    def _linear_posterior_blocks(
        X, Y, mean, inv_scale, theta, coef, intercept, variances, block, resp, row_ll
    ):
        # em_pass's E-step alone, block by block: the gate's log-softmax and
        # the joint densities, each through the vectorised exp
        n, d = X.shape
        K = variances.shape[0]
        log_norm, inv_variances = _gaussian_norms(variances)
        gate_coef = np.ascontiguousarray(theta[:d])
        for b in numba.prange(-(-n // block)):
            start = b * block
            m = min(n, start + block) - start
            xs = np.empty((m, d))
            exponents = np.empty(m * K)
            powers = np.empty(m * K)
            scratch = np.empty(m * K)
            log_g = np.empty((m, K))
            tops = np.empty(m)
            _gate_block_exponents(
                X, start, m, mean, inv_scale, gate_coef, theta[d], xs, exponents
            )
            means = np.dot(X[start : start + m], coef)
            _exp_nonpositive(exponents, powers, scratch, m * K)
            for r in range(m):
                total = 0.0
                for k in range(K):
                    total += powers[r * K + k]
                log_total = math.log(total)
                for k in range(K):
                    log_g[r, k] = exponents[r * K + k] - log_total
                tops[r] = _joint_row_exponents(
                    Y,
                    start + r,
                    means,
                    r,
                    intercept,
                    inv_variances,
                    log_norm,
                    log_g,
                    exponents,
                )
            _exp_nonpositive(exponents, powers, scratch, m * K)
            for r in range(m):
                _posterior_row_from_powers(
                    powers, r, K, tops[r], resp, row_ll, start + r
                )

    def _tanh_inplace(v):
        # v = tanh(v) in loops that vectorise (libm's scalar tanh took 9.8
        # ns an element, 21 of the 40 us of a gate evaluation on 133 rows
        # and 16 units): tanh|x| = (1 - e) / (1 + e) with e = exp(-2|x|)
        # by the vectorised exp (within 4 ulps: 1 - e loses about two bits
        # just above 1/8), and below |x| = 1/8, where 1 - e would cancel
        # more, the Taylor series to x^15 (its next term is 1e-18 of x
        # there); the sign put back by copysign
        n = v.size
        exponents = np.empty(n)
        powers = np.empty(n)
        scratch = np.empty(n)
        for i in range(n):
            exponents[i] = -2.0 * abs(v[i])
        _exp_nonpositive(exponents, powers, scratch, n)
        for i in range(n):
            x = v[i]
            x2 = x * x
            series = -929569.0 / 638512875.0
            series = series * x2 + 21844.0 / 6081075.0
            series = series * x2 - 1382.0 / 155925.0
            series = series * x2 + 62.0 / 2835.0
            series = series * x2 - 17.0 / 315.0
            series = series * x2 + 2.0 / 15.0
            series = series * x2 - 1.0 / 3.0
            series = math.copysign(x + x * x2 * series, x)  # tanh(-0) = -0
            e = powers[i]
            ratio = math.copysign((1.0 - e) / (1.0 + e), x)
            v[i] = series if abs(x) < 0.125 else ratio

    _tanh_inplace = numba.njit(
        cache=True, fastmath=False, nogil=True, error_model="numpy"
    )(_tanh_inplace)

    def _mlp_gate_objective(flat, shapes, Xs, targets, weight, alpha, grad):
        # the NumPy twin's passes, each a BLAS product or one loop over the
        # rows: the small arrays of a gating network made NumPy's per-call
        # overhead most of an evaluation (90 us on 133 rows, 16 units)
        L = shapes.shape[0]
        n = Xs.shape[0]
        offsets = np.zeros(L + 1, dtype=np.int64)
        for j in range(L):
            offsets[j + 1] = offsets[j] + shapes[j, 0] * shapes[j, 1]
        activations = numba.typed.List()
        activations.append(np.ascontiguousarray(Xs))
        for j in range(L - 1):
            rows, cols = shapes[j, 0], shapes[j, 1]
            layer = flat[offsets[j] : offsets[j + 1]].reshape((rows, cols))
            a = np.dot(activations[j], np.ascontiguousarray(layer[:-1]))
            for i in range(n):
                for c in range(cols):
                    a[i, c] += layer[rows - 1, c]
            _tanh_inplace(a.reshape(n * cols))
            activations.append(a)
        rows, cols = shapes[L - 1, 0], shapes[L - 1, 1]
        out = flat[offsets[L - 1] : offsets[L]].reshape((rows, cols))
        z = np.dot(activations[L - 1], np.ascontiguousarray(out[:-1]))
        # the softmax over [0, z] less each row's top, every exponential of
        # the rows at once through the vectorised exp
        K = cols + 1
        tops = np.empty(n)
        exponents = np.empty(n * K)
        for i in range(n):
            top = 0.0
            for k in range(cols):
                z[i, k] += out[rows - 1, k]
                if z[i, k] > top:
                    top = z[i, k]
            tops[i] = top
            exponents[i * K] = -top
            for k in range(cols):
                exponents[i * K + k + 1] = z[i, k] - top
        powers = np.empty(n * K)
        scratch = np.empty(n * K)
        _exp_nonpositive(exponents, powers, scratch, n * K)
        loss = 0.0
        delta = np.empty((n, cols))
        for i in range(n):
            total = 0.0
            for k in range(K):
                total += powers[i * K + k]
            lse = tops[i] + math.log(total)
            inverse = 1.0 / total  # one division a row, not K - 1
            w = weight[i]
            acc = -targets[i, 0] * lse
            for k in range(cols):
                acc += targets[i, k + 1] * (z[i, k] - lse)
                delta[i, k] = w * (powers[i * K + k + 1] * inverse - targets[i, k + 1])
            loss -= w * acc
        for j in range(L - 1, -1, -1):
            rows, cols = shapes[j, 0], shapes[j, 1]
            layer = flat[offsets[j] : offsets[j + 1]].reshape((rows, cols))
            g = grad[offsets[j] : offsets[j + 1]].reshape((rows, cols))
            a = activations[j]
            g[:-1] = np.dot(a.T, delta)
            for c in range(cols):
                acc = 0.0
                for i in range(n):
                    acc += delta[i, c]
                g[rows - 1, c] = acc
            for r in range(rows - 1):
                for c in range(cols):
                    g[r, c] += alpha * layer[r, c]
                    loss += 0.5 * alpha * layer[r, c] * layer[r, c]
            if j > 0:
                back = np.dot(delta, np.ascontiguousarray(layer[:-1].T))
                for i in range(n):
                    for r in range(rows - 1):
                        back[i, r] *= 1.0 - a[i, r] * a[i, r]
                delta = back
        return loss

    _log_softmax_serial = _njit(_log_softmax_rows)
    _log_softmax_parallel = _njit_parallel(_log_softmax_rows)
    _gaussian_serial = _njit(_gaussian_log_prob_rows)
    _gaussian_parallel = _njit_parallel(_gaussian_log_prob_rows)
    _resp_serial = _njit(_responsibilities_rows)
    _resp_parallel = _njit_parallel(_responsibilities_rows)
    _gaussian_resp_serial = _njit(_gaussian_responsibilities_rows)
    _gaussian_resp_parallel = _njit_parallel(_gaussian_responsibilities_rows)
    _gate_loss_serial = _njit(_gate_loss_rows)
    _gate_loss_parallel = _njit_parallel(_gate_loss_rows)
    _gate_objective_serial = _njit(_gate_objective_blocks)
    _gate_objective_parallel = _njit_parallel(_gate_objective_blocks)
    _gate_hessian_serial = _njit(_gate_hessian_blocks)
    _gate_hessian_parallel = _njit_parallel(_gate_hessian_blocks)
    _sq_resid_serial = _njit(_weighted_sq_residuals_blocks)
    _sq_resid_parallel = _njit_parallel(_weighted_sq_residuals_blocks)
    _weighted_grams_serial = _njit(_weighted_grams_parts)
    _weighted_grams_parallel = _njit_parallel(_weighted_grams_parts)
    _em_pass_serial = _njit(_em_pass_parts)
    _mlp_gate_objective_serial = _njit(_mlp_gate_objective)
    _em_pass_parallel = _njit_parallel(_em_pass_parts)
    _linear_posterior_serial = _njit(_linear_posterior_blocks)
    _linear_posterior_parallel = _njit_parallel(_linear_posterior_blocks)

    def _mlp_gate_lbfgs(
        flat, shapes, Xs, targets, weight, alpha, scale, max_iter, ftol
    ):
        # L-BFGS (Nocedal & Wright, algorithm 7.5, the direction by their
        # two-loop recursion 7.4) on scale times the gate's objective, flat
        # updated in place; returns the iterations taken. Written here
        # because scipy's L-BFGS-B spent 55-70 us of Python per iteration
        # around a 20 us evaluation, and EM's warm M-steps on a small gate
        # take thousands of iterations. Backtracking Armijo line search from
        # the unit step (the first one of unit length, as scipy's), the pair
        # dropped where its curvature s'y is not positive; stops as L-BFGS-B
        # does: on a relative decrease of at most ftol, a gradient below
        # _LBFGS_GTOL, or max_iter; and where the direction is not one of
        # descent or no step along it decreases the loss (scipy would clear
        # its pairs and try the gradient once more; an EM M-step just ends
        # there, the objective never higher than at its start)
        P = flat.size
        grad = np.empty(P)
        loss = scale * _mlp_gate_objective_serial(
            flat, shapes, Xs, targets, weight, alpha, grad
        )
        grad *= scale
        steps = np.zeros((_LBFGS_MEMORY, P))
        changes = np.zeros((_LBFGS_MEMORY, P))
        rho = np.zeros(_LBFGS_MEMORY)
        recursion = np.zeros(_LBFGS_MEMORY)  # the two-loop recursion's alphas
        trial = np.empty(P)
        trial_grad = np.empty(P)
        direction = np.empty(P)
        step = np.empty(P)
        stored, newest, gamma = 0, -1, 1.0
        for it in range(max_iter):
            if np.max(np.abs(grad)) <= _LBFGS_GTOL:
                return it
            # two-loop recursion: direction = -H grad
            direction[:] = grad
            for j in range(stored):
                m = (newest - j) % _LBFGS_MEMORY
                recursion[m] = rho[m] * np.dot(steps[m], direction)
                direction -= recursion[m] * changes[m]
            if stored == 0:
                direction /= math.sqrt(np.dot(grad, grad))
            else:
                direction *= gamma
            for j in range(stored - 1, -1, -1):
                m = (newest - j) % _LBFGS_MEMORY
                beta = rho[m] * np.dot(changes[m], direction)
                direction += (recursion[m] - beta) * steps[m]
            direction *= -1.0
            slope = np.dot(grad, direction)
            if not slope < 0.0:
                return it
            t = 1.0
            for _ in range(_LBFGS_HALVINGS):
                for i in range(P):
                    trial[i] = flat[i] + t * direction[i]
                trial_loss = scale * _mlp_gate_objective_serial(
                    trial, shapes, Xs, targets, weight, alpha, trial_grad
                )
                if trial_loss <= loss + 1e-4 * t * slope:
                    break
                t *= 0.5
            else:
                return it  # no step decreases the loss: its minimum to round-off
            trial_grad *= scale
            for i in range(P):
                step[i] = trial[i] - flat[i]
            change = trial_grad - grad
            curvature = np.dot(step, change)
            if curvature > _LBFGS_EPS * np.dot(change, change):
                newest = (newest + 1) % _LBFGS_MEMORY
                steps[newest] = step
                changes[newest] = change
                rho[newest] = 1.0 / curvature
                gamma = curvature / np.dot(change, change)
                stored = min(stored + 1, _LBFGS_MEMORY)
            decrease = loss - trial_loss
            flat[:] = trial
            grad[:] = trial_grad
            previous, loss = loss, trial_loss
            if decrease <= ftol * max(abs(previous), abs(loss), 1.0):
                return it + 1
        return max_iter

    _mlp_gate_lbfgs = _njit(_mlp_gate_lbfgs)

    def _linear_experts_from_grams(
        grams,
        x_shift,
        y_shift,
        alphas,
        fit_intercept,
        cancellation,
        coef,
        intercept,
        variances,
        ok,
    ):
        # linear_experts_from_grams_numpy's loop, with a Cholesky factor and
        # inverse written out for the experts' small systems: for a few
        # experts of a few features, the per-expert LAPACK calls and NumPy
        # steps of the Python path took 0.3 ms an M-step, a sixth of a
        # 1e4-row fit
        K, p, _ = grams.shape
        d = x_shift.shape[0]
        q = p - d - 1
        eps = np.finfo(np.float64).eps
        tiny = (8.0 * eps) ** 2
        A = np.empty((d, d))
        B = np.empty((d, q))
        L = np.empty((d, d))
        inverse = np.empty((d, d))
        dx = np.empty(d)
        dy = np.empty(q)
        for k in range(K):
            G = grams[k]
            w = G[d, d]
            ok[k] = False
            if not w > 0:
                continue
            # plain_grams' tests (skmoe._em._stats): no column whose centring
            # on the expert's mean keeps at most ``cancellation`` of it, or
            # whose spread is round-off beside its second moment
            plain = True
            for j in range(d):
                raw = G[j, j]
                dx[j] = G[j, d] / w
                centred = raw - w * dx[j] * dx[j]
                second = raw + 2.0 * x_shift[j] * G[j, d] + w * x_shift[j] ** 2
                if not (centred > cancellation * raw and centred > tiny * second):
                    plain = False
            if not plain:
                continue
            for i in range(d):
                for j in range(d):
                    A[i, j] = 0.5 * (G[i, j] + G[j, i])
                for o in range(q):
                    B[i, o] = G[i, d + 1 + o]
            if fit_intercept[k]:
                for i in range(d):
                    dx[i] = G[i, d] / w
                for o in range(q):
                    dy[o] = G[d, d + 1 + o] / w
                for i in range(d):
                    for j in range(d):
                        A[i, j] -= w * dx[i] * dx[j]
                    for o in range(q):
                        B[i, o] -= w * dx[i] * dy[o]
            else:
                dx[:] = 0.0
                dy[:] = 0.0
                for i in range(d):
                    for j in range(d):
                        A[i, j] += x_shift[i] * G[j, d] + G[i, d] * x_shift[j]
                    for j in range(d):
                        A[i, j] += w * x_shift[i] * x_shift[j]
                    for o in range(q):
                        B[i, o] += x_shift[i] * G[d, d + 1 + o]
            for i in range(d):
                A[i, i] += alphas[k]
            # Cholesky A = L L^T
            positive = True
            for j in range(d):
                acc = A[j, j]
                for t in range(j):
                    acc -= L[j, t] * L[j, t]
                if not acc > 0.0:
                    positive = False
                    break
                L[j, j] = math.sqrt(acc)
                for i in range(j + 1, d):
                    acc = A[i, j]
                    for t in range(j):
                        acc -= L[i, t] * L[j, t]
                    L[i, j] = acc / L[j, j]
                for i in range(j):
                    L[i, j] = 0.0
            if not positive:
                continue
            # A^{-1} = L^{-T} L^{-1}, column by column of L^{-1}
            for c in range(d):
                for i in range(d):
                    acc = 1.0 if i == c else 0.0
                    for t in range(c, i):
                        acc -= L[i, t] * inverse[t, c]
                    inverse[i, c] = acc / L[i, i] if i >= c else 0.0
            norm_a, norm_inv = 0.0, 0.0
            for j in range(d):
                col_a, col_inv = 0.0, 0.0
                for i in range(d):
                    col_a += abs(A[i, j])
                    acc = 0.0
                    for t in range(max(i, j), d):
                        acc += inverse[t, i] * inverse[t, j]
                    col_inv += abs(acc)
                norm_a = max(norm_a, col_a)
                norm_inv = max(norm_inv, col_inv)
            if not 1.0 / (norm_a * norm_inv) >= _EXPERT_RCOND:
                continue
            # b = A^{-1} B by the two triangular solves
            for o in range(q):
                for i in range(d):
                    acc = B[i, o]
                    for t in range(i):
                        acc -= L[i, t] * coef[k, o, t]
                    coef[k, o, i] = acc / L[i, i]
                for i in range(d - 1, -1, -1):
                    acc = coef[k, o, i]
                    for t in range(i + 1, d):
                        acc -= L[t, i] * coef[k, o, t]
                    coef[k, o, i] = acc / L[i, i]
            for o in range(q):
                if fit_intercept[k]:
                    acc = dy[o] + y_shift[o]
                    for i in range(d):
                        acc -= (dx[i] + x_shift[i]) * coef[k, o, i]
                    intercept[k, o] = acc
                else:
                    intercept[k, o] = 0.0
            # the variances about the expert's own means
            for o in range(q):
                my = G[d, d + 1 + o] / w
                c = my + y_shift[o] - intercept[k, o]
                cross, quad = 0.0, 0.0
                for i in range(d):
                    mx = G[i, d] / w
                    c -= coef[k, o, i] * (mx + x_shift[i])
                    cross += coef[k, o, i] * (G[i, d + 1 + o] - w * mx * my)
                    row = 0.0
                    for j in range(d):
                        row += (G[i, j] - w * mx * (G[j, d] / w)) * coef[k, o, j]
                    quad += coef[k, o, i] * row
                S = G[d + 1 + o, d + 1 + o] - w * my * my
                rss = S - 2.0 * cross + quad + w * c * c
                variances[k, o] = max(rss, 0.0) / w
            ok[k] = True

    _linear_experts_from_grams = _njit(_linear_experts_from_grams)

    def linear_experts_from_grams_numba(
        grams, x_shift, y_shift, alphas, fit_intercept, cancellation
    ):
        """Numba twin of :func:`linear_experts_from_grams_numpy`."""
        coef, intercept, variances, ok = _linear_experts_outputs(
            grams, x_shift.shape[0]
        )
        _linear_experts_from_grams(
            np.ascontiguousarray(grams, dtype=np.float64),
            np.ascontiguousarray(x_shift, dtype=np.float64),
            np.ascontiguousarray(y_shift, dtype=np.float64),
            np.ascontiguousarray(alphas, dtype=np.float64),
            np.ascontiguousarray(fit_intercept, dtype=np.bool_),
            float(cancellation),
            coef,
            intercept,
            variances,
            ok,
        )
        return coef, intercept, variances, ok

    def _nearest_centre(Z, i, centers):
        # the centre nearest row i of Z, the first of equals
        best, best_k = np.inf, 0
        for k in range(centers.shape[0]):
            dist = 0.0
            for j in range(Z.shape[1]):
                diff = Z[i, j] - centers[k, j]
                dist += diff * diff
            if dist < best:
                best, best_k = dist, k
        return best_k

    _nearest_centre = numba.njit(
        cache=True, fastmath=False, nogil=True, inline="always"
    )(_nearest_centre)

    def _weighted_lloyd(Z, weight, centers, max_iter, tol, labels):
        # weighted_lloyd_numpy's iterations, centers and labels updated in
        # place; returns (n_iter, ok). Written here because scikit-learn's
        # KMeans spent 3-4 ms on checks and thread set-up around a 0.5-1 ms
        # Lloyd run at 1e4 rows, a tenth of a whole default fit there
        n, d = Z.shape
        K = centers.shape[0]
        sums = np.zeros((K, d))
        mass = np.zeros(K)
        for i in range(n):
            labels[i] = -1
        strict = False
        n_iter = 0
        for it in range(max_iter):
            n_iter = it + 1
            sums[:] = 0.0
            mass[:] = 0.0
            changed = False
            for i in range(n):
                best_k = _nearest_centre(Z, i, centers)
                if labels[i] != best_k:
                    changed = True
                labels[i] = best_k
                w = weight[i]
                mass[best_k] += w
                for j in range(d):
                    sums[best_k, j] += w * Z[i, j]
            for k in range(K):
                if not mass[k] > 0.0:
                    return n_iter, False
            shift = 0.0
            for k in range(K):
                for j in range(d):
                    new = sums[k, j] / mass[k]
                    shift += (new - centers[k, j]) ** 2
                    centers[k, j] = new
            if not changed:
                strict = True
                break
            if shift <= tol:
                break
        if not strict:
            for i in range(n):
                labels[i] = _nearest_centre(Z, i, centers)
        return n_iter, True

    _weighted_lloyd = _njit(_weighted_lloyd)

    def weighted_lloyd_numba(Z, sample_weight, centers, *, max_iter, tol):
        """Numba twin of :func:`weighted_lloyd_numpy`."""
        centers = np.array(centers, dtype=np.float64)
        labels = np.empty(Z.shape[0], dtype=np.int64)
        n_iter, ok = _weighted_lloyd(
            np.ascontiguousarray(Z, dtype=np.float64),
            np.ascontiguousarray(sample_weight, dtype=np.float64),
            centers,
            int(max_iter),
            float(tol),
            labels,
        )
        return labels, centers, int(n_iter), bool(ok)

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

    def gaussian_responsibilities_numba(log_gate, Y, means, variances):
        """Numba twin of :func:`gaussian_responsibilities_numpy`: one pass."""
        log_gate = np.ascontiguousarray(log_gate, dtype=np.float64)
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        means = np.ascontiguousarray(means, dtype=np.float64)
        variances = np.ascontiguousarray(variances, dtype=np.float64)
        resp = np.empty_like(log_gate)
        row_ll = np.empty(log_gate.shape[0])
        _pick(_gaussian_resp_serial, _gaussian_resp_parallel, len(log_gate))(
            log_gate, Y, means, variances, resp, row_ll
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

    def gate_objective_numba(
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
        """Numba twin of :func:`gate_objective_numpy`: one pass, no temporaries."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        d = X.shape[1]
        if mean is None:
            mean, scale = np.zeros(d), np.ones(d)
        mean = np.ascontiguousarray(mean, dtype=np.float64)
        inv_scale = 1.0 / np.asarray(scale, dtype=np.float64)
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        targets = np.ascontiguousarray(targets, dtype=np.float64)
        sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        n_blocks = max(1, -(-X.shape[0] // _GATE_BLOCK_ROWS))
        # one spare row per block for its loss
        parts = np.zeros((n_blocks, d + 2, theta.shape[1]))
        none = np.empty((0, theta.shape[1] + 1))
        log_proba = none if log_proba is None else log_proba
        proba = none if proba is None else proba
        for buffer in (log_proba, proba):
            if not (
                buffer.flags.c_contiguous and buffer.dtype == np.float64
            ):  # pragma: no cover - callers pass their own C buffers
                raise ValueError("log_proba and proba must be C float64 arrays.")
        _pick(_gate_objective_serial, _gate_objective_parallel, len(X))(
            X,
            mean,
            inv_scale,
            theta,
            targets,
            sample_weight,
            parts,
            log_proba,
            proba,
            bool(given),
        )
        total = parts.sum(axis=0)
        return float(total[d + 1, 0]), total[: d + 1]

    def gate_hessian_numba(X, mean, scale, theta, sample_weight, stride=1):
        """Numba twin of :func:`gate_hessian_numpy`."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        d = X.shape[1]
        if mean is None:
            mean, scale = np.zeros(d), np.ones(d)
        mean = np.ascontiguousarray(mean, dtype=np.float64)
        inv_scale = 1.0 / np.asarray(scale, dtype=np.float64)
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        n_rows = -(-X.shape[0] // stride)
        n_parts = max(1, -(-n_rows // _GATE_BLOCK_ROWS))
        p, K1 = d + 1, theta.shape[1]
        P = gram_padded_columns(p * K1)
        outer_parts = np.zeros((n_parts, 1, P, P))
        gram_parts = np.zeros(
            (n_parts, K1, gram_padded_columns(p), gram_padded_columns(p))
        )
        _pick(_gate_hessian_serial, _gate_hessian_parallel, n_rows)(
            X,
            mean,
            inv_scale,
            theta,
            sample_weight,
            int(stride),
            gram_block_rows(P, 1),
            outer_parts,
            gram_parts,
        )
        # H = sum_i w_i (diag(g_i) - g_i g_i^T) (x) z_i z_i^T
        H = -gram_parts_total(outer_parts, p * K1)[0]
        diagonal = gram_parts_total(gram_parts, p)
        for k in range(K1):
            H[k::K1, k::K1] += diagonal[k]
        return H

    def weighted_sq_residuals_numba(Y, means, weights):
        """Numba twin of :func:`weighted_sq_residuals_numpy`: one pass."""
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        means = np.ascontiguousarray(means, dtype=np.float64)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        n, K, q = means.shape
        parts = np.zeros((max(1, -(-n // _GATE_BLOCK_ROWS)), K, q + 1))
        _pick(_sq_resid_serial, _sq_resid_parallel, n)(Y, means, weights, parts)
        total = parts.sum(axis=0)
        return total[:, :q], total[:, q].copy()

    def weighted_grams_numba(X, x_shift, Y, weights, y_shift=None):
        """Numba twin of :func:`weighted_grams_numpy`: one pass, tiled per block."""
        if y_shift is None:
            y_shift = np.zeros(np.shape(Y)[1])
        y_shift = np.ascontiguousarray(y_shift, dtype=np.float64)
        X = np.ascontiguousarray(X, dtype=np.float64)
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        x_shift = np.ascontiguousarray(x_shift, dtype=np.float64)
        n, d = X.shape
        K = weights.shape[1]
        p = d + 1 + Y.shape[1]
        P = gram_padded_columns(p)
        parts = np.zeros((max(1, -(-n // _GRAM_PART_ROWS)), K, P, P))
        _pick(_weighted_grams_serial, _weighted_grams_parallel, n)(
            X, x_shift, Y, y_shift, weights, gram_block_rows(p, K), parts
        )
        return gram_parts_total(parts, p)

    def em_pass_numba(
        X,
        Y,
        sample_weight,
        gate_mean,
        gate_scale,
        theta,
        coef,
        intercept,
        variances,
        previous,
        x_shift,
        y_shift,
    ):
        """Numba twin of :func:`em_pass_numpy`: the whole pass, once."""
        (
            X,
            Y,
            sample_weight,
            theta,
            coef,
            intercept,
            variances,
            x_shift,
            y_shift,
            inv_scale,
            gate_offset,
        ) = _linear_pass_inputs(
            X,
            Y,
            sample_weight,
            gate_mean,
            gate_scale,
            theta,
            coef,
            intercept,
            variances,
            x_shift,
            y_shift,
        )
        n, d = X.shape
        K, q = variances.shape
        p = d + 1 + q
        previous = (
            np.empty((0, K))
            if previous is None
            else np.ascontiguousarray(previous, dtype=np.float64)
        )
        resp = np.empty((n, K))
        row_ll = np.empty(n)
        n_parts = max(1, -(-n // _GRAM_PART_ROWS))
        P = gram_padded_columns(p)
        gram_parts = np.zeros((n_parts, K, P, P))
        sum_parts = np.zeros((n_parts, d + 1, K - 1))
        scalar_parts = np.zeros((n_parts, 3 + K))
        # the gate's logits on X - x_shift, its standardisation folded into
        # its coefficients, and the experts' means likewise, one product
        products = np.ascontiguousarray(
            np.hstack([theta[:d] * inv_scale[:, None], coef]).T
        )
        offsets = np.concatenate(
            [theta[d] + gate_offset @ theta[:d], intercept + x_shift @ coef]
        )
        with single_threaded_blas():
            _pick(_em_pass_serial, _em_pass_parallel, n)(
                X,
                Y,
                sample_weight,
                products,
                offsets,
                variances,
                previous,
                x_shift,
                y_shift,
                gram_block_rows(p, K),
                resp,
                row_ll,
                gram_parts,
                sum_parts,
                scalar_parts,
            )
        raw_sums = sum_parts.sum(axis=0)
        gate_sums = np.empty_like(raw_sums)
        # sum_i w g_ik xs_i from the sums about x_shift and the masses
        gate_sums[:d] = (
            inv_scale[:, None] * raw_sums[:d] + gate_offset[:, None] * raw_sums[d]
        )
        gate_sums[d] = raw_sums[d]
        grams = gram_parts_total(gram_parts, p)
        totals = scalar_parts.sum(axis=0)
        loss_previous, loss, ll = totals[:3]
        if previous.shape[0] == 0:
            loss_previous = np.nan
        scalars = (float(loss_previous), float(loss), float(ll))
        return resp, row_ll, grams, gate_sums, scalars, totals[3:]

    def linear_posterior_numba(
        X, Y, gate_mean, gate_scale, theta, coef, intercept, variances
    ):
        """Numba twin of :func:`linear_posterior_numpy`."""

        def c(a):
            return np.ascontiguousarray(a, dtype=np.float64)

        X, Y = c(X), c(Y)
        n = X.shape[0]
        resp = np.empty((n, variances.shape[0]))
        row_ll = np.empty(n)
        with single_threaded_blas():
            _pick(_linear_posterior_serial, _linear_posterior_parallel, n)(
                X,
                Y,
                c(gate_mean),
                1.0 / c(gate_scale),
                c(theta),
                c(coef),
                c(intercept),
                c(variances),
                _LINEAR_POSTERIOR_BLOCK_ROWS,
                resp,
                row_ll,
            )
        return resp, row_ll

    def _network_inputs(shapes, Xs, targets, sample_weight, alpha):
        # the gating network kernels' arguments after its parameters
        return (
            np.asarray(shapes, dtype=np.int64).reshape(-1, 2),
            np.ascontiguousarray(Xs, dtype=np.float64),
            np.ascontiguousarray(targets, dtype=np.float64),
            np.ascontiguousarray(sample_weight, dtype=np.float64),
            float(alpha),
        )

    def mlp_gate_minimize_numba(
        flat, shapes, Xs, targets, sample_weight, alpha, *, max_iter, tol
    ):
        """Numba twin of :func:`mlp_gate_minimize_numpy`."""
        flat = np.array(flat, dtype=np.float64)
        total = float(np.sum(sample_weight))
        n_iter = _mlp_gate_lbfgs(
            flat,
            *_network_inputs(shapes, Xs, targets, sample_weight, alpha),
            1.0 / total if total > 0 else 1.0,  # the mean's scale
            int(max_iter),
            float(tol),
        )
        return flat, int(n_iter)

    def mlp_gate_objective_numba(flat, shapes, Xs, targets, sample_weight, alpha):
        """Numba twin of :func:`mlp_gate_objective_numpy`."""
        flat = np.ascontiguousarray(flat, dtype=np.float64)
        grad = np.empty_like(flat)
        loss = _mlp_gate_objective_serial(
            flat, *_network_inputs(shapes, Xs, targets, sample_weight, alpha), grad
        )
        return float(loss), grad

    log_softmax = log_softmax_numba
    gaussian_log_prob = gaussian_log_prob_numba
    responsibilities = responsibilities_numba
    gaussian_responsibilities = gaussian_responsibilities_numba
    gate_loss = gate_loss_numba
    gate_objective = gate_objective_numba
    gate_hessian = gate_hessian_numba
    weighted_grams = weighted_grams_numba
    em_pass = em_pass_numba
    linear_posterior = linear_posterior_numba
    mlp_gate_objective = mlp_gate_objective_numba
    mlp_gate_minimize = mlp_gate_minimize_numba
    weighted_sq_residuals = weighted_sq_residuals_numba
    weighted_lloyd = weighted_lloyd_numba
    linear_experts_from_grams = linear_experts_from_grams_numba
else:  # pragma: no cover
    log_softmax = log_softmax_numpy
    gaussian_log_prob = gaussian_log_prob_numpy
    responsibilities = responsibilities_numpy
    gaussian_responsibilities = gaussian_responsibilities_numpy
    gate_loss = gate_loss_numpy
    gate_objective = gate_objective_numpy
    gate_hessian = gate_hessian_numpy
    weighted_grams = weighted_grams_numpy
    em_pass = em_pass_numpy
    linear_posterior = linear_posterior_numpy
    mlp_gate_objective = mlp_gate_objective_numpy
    mlp_gate_minimize = mlp_gate_minimize_numpy
    weighted_sq_residuals = weighted_sq_residuals_numpy
    weighted_lloyd = weighted_lloyd_numpy
    linear_experts_from_grams = linear_experts_from_grams_numpy


# --- gradient training ---
#
# The data term of the joint objective of ``training="gradient"``,
# ``-sum_i w_i log sum_k g_ik p_ik``, and its gradient in the gate logits and
# in the experts' outputs (Gaussian means and log-variances, or logistic
# logits). With ``h_ik`` the posterior of expert ``k`` for row ``i``:
# d/d gate_logit_ik = w_i (g_ik - h_ik) and d/d log p_ik = -w_i h_ik. The
# products with the inputs (to reach the coefficients) stay with BLAS.

# Rows per block of the gradient kernels: each block sums its own part of the
# log-variance gradient and loss, in a fixed order whatever the threads.
_GRADIENT_BLOCK_ROWS = 4096


def gaussian_moe_gradient_numpy(gate_logits, means, Y, log_var, sample_weight):
    """Negative log-likelihood of a Gaussian mixture of experts and its gradient.

    Parameters
    ----------
    gate_logits : ndarray of shape (n, K)
    means : ndarray of shape (n, K, n_outputs)
        Expert means.
    Y : ndarray of shape (n, n_outputs)
    log_var : ndarray of shape (K, n_outputs)
        Log noise variances.
    sample_weight : ndarray of shape (n,)

    Returns
    -------
    loss : float
        ``-sum_i w_i log sum_k g_ik N(y_i; means_ik, diag(exp(log_var_k)))``.
    d_gate : ndarray of shape (n, K)
        Gradient in the gate logits.
    d_means : ndarray of shape (n, K, n_outputs)
        Gradient in the means.
    d_log_var : ndarray of shape (K, n_outputs)
        Gradient in the log-variances.
    """
    log_gate = log_softmax_numpy(gate_logits)
    log_prob = gaussian_log_prob_numpy(Y, means, np.exp(log_var))
    resp, row_ll = responsibilities_numpy(log_gate, log_prob)
    wh = sample_weight[:, None] * resp
    d_gate = sample_weight[:, None] * np.exp(log_gate) - wh
    resid = Y[:, None, :] - means
    inv_var = np.exp(-log_var)[None]
    d_means = -wh[:, :, None] * resid * inv_var
    d_log_var = -0.5 * np.sum(wh[:, :, None] * (resid**2 * inv_var - 1.0), axis=0)
    return float(-(sample_weight @ row_ll)), d_gate, d_means, d_log_var


def logistic_moe_gradient_numpy(gate_logits, expert_logits, codes, sample_weight):
    """Negative log-likelihood of a mixture of softmax experts and its gradient.

    Parameters
    ----------
    gate_logits : ndarray of shape (n, K)
    expert_logits : ndarray of shape (n, K, n_classes)
        Each expert's class logits.
    codes : ndarray of shape (n,)
        Label codes ``0 .. n_classes - 1``.
    sample_weight : ndarray of shape (n,)

    Returns
    -------
    loss : float
        ``-sum_i w_i log sum_k g_ik softmax(expert_logits_ik)[y_i]``.
    d_gate : ndarray of shape (n, K)
        Gradient in the gate logits.
    d_expert : ndarray of shape (n, K, n_classes)
        Gradient in the expert logits.
    """
    n = gate_logits.shape[0]
    log_gate = log_softmax_numpy(gate_logits)
    log_p = expert_logits - logsumexp(expert_logits, axis=2, keepdims=True)
    log_prob = log_p[np.arange(n), :, codes]
    resp, row_ll = responsibilities_numpy(log_gate, log_prob)
    wh = sample_weight[:, None] * resp
    d_gate = sample_weight[:, None] * np.exp(log_gate) - wh
    d_expert = wh[:, :, None] * np.exp(log_p)
    d_expert[np.arange(n), :, codes] -= wh
    return float(-(sample_weight @ row_ll)), d_gate, d_expert


if NUMBA_AVAILABLE:

    def _gaussian_moe_gradient_blocks(
        gate_logits, means, Y, log_var, weight, d_gate, d_means, parts
    ):
        # parts[b, :K * q] collects block b's log-variance gradient,
        # parts[b, K * q] its loss
        n, K, q = means.shape
        inv_var = np.exp(-log_var)
        log_norm = np.empty(K)
        for k in range(K):
            acc = q * _LOG_2PI
            for o in range(q):
                acc += log_var[k, o]
            log_norm[k] = acc
        for b in numba.prange(parts.shape[0]):
            start = b * _GRADIENT_BLOCK_ROWS
            stop = min(n, start + _GRADIENT_BLOCK_ROWS)
            part = parts[b]
            log_gate = np.empty(K)
            joint = np.empty(K)
            for i in range(start, stop):
                top = gate_logits[i, 0]
                for k in range(1, K):
                    if gate_logits[i, k] > top:
                        top = gate_logits[i, k]
                s = 0.0
                for k in range(K):
                    s += math.exp(gate_logits[i, k] - top)
                lse = top + math.log(s)
                best = -np.inf
                for k in range(K):
                    log_gate[k] = gate_logits[i, k] - lse
                    quad = 0.0
                    for o in range(q):
                        r = Y[i, o] - means[i, k, o]
                        quad += r * r * inv_var[k, o]
                    joint[k] = log_gate[k] - 0.5 * (quad + log_norm[k])
                    if joint[k] > best:
                        best = joint[k]
                s = 0.0
                for k in range(K):
                    s += math.exp(joint[k] - best)
                row_ll = best + math.log(s)
                w = weight[i]
                for k in range(K):
                    wh = w * math.exp(joint[k] - row_ll)
                    d_gate[i, k] = w * math.exp(log_gate[k]) - wh
                    for o in range(q):
                        r = Y[i, o] - means[i, k, o]
                        d_means[i, k, o] = -wh * r * inv_var[k, o]
                        part[k * q + o] -= 0.5 * wh * (r * r * inv_var[k, o] - 1.0)
                part[K * q] -= w * row_ll

    def _logistic_moe_gradient_blocks(
        gate_logits, expert_logits, codes, weight, d_gate, d_expert, parts
    ):
        # parts[b] holds block b's loss
        n, K, C = expert_logits.shape
        for b in numba.prange(parts.shape[0]):
            start = b * _GRADIENT_BLOCK_ROWS
            stop = min(n, start + _GRADIENT_BLOCK_ROWS)
            log_gate = np.empty(K)
            joint = np.empty(K)
            lse_expert = np.empty(K)
            loss = 0.0
            for i in range(start, stop):
                top = gate_logits[i, 0]
                for k in range(1, K):
                    if gate_logits[i, k] > top:
                        top = gate_logits[i, k]
                s = 0.0
                for k in range(K):
                    s += math.exp(gate_logits[i, k] - top)
                lse = top + math.log(s)
                y = codes[i]
                best = -np.inf
                for k in range(K):
                    log_gate[k] = gate_logits[i, k] - lse
                    m = expert_logits[i, k, 0]
                    for c in range(1, C):
                        if expert_logits[i, k, c] > m:
                            m = expert_logits[i, k, c]
                    s = 0.0
                    for c in range(C):
                        s += math.exp(expert_logits[i, k, c] - m)
                    lse_expert[k] = m + math.log(s)
                    joint[k] = log_gate[k] + expert_logits[i, k, y] - lse_expert[k]
                    if joint[k] > best:
                        best = joint[k]
                s = 0.0
                for k in range(K):
                    s += math.exp(joint[k] - best)
                row_ll = best + math.log(s)
                w = weight[i]
                for k in range(K):
                    wh = w * math.exp(joint[k] - row_ll)
                    d_gate[i, k] = w * math.exp(log_gate[k]) - wh
                    for c in range(C):
                        p = math.exp(expert_logits[i, k, c] - lse_expert[k])
                        d_expert[i, k, c] = wh * p
                    d_expert[i, k, y] -= wh
                loss -= w * row_ll
            parts[b] = loss

    _gaussian_moe_gradient_serial = _njit(_gaussian_moe_gradient_blocks)
    _gaussian_moe_gradient_parallel = _njit_parallel(_gaussian_moe_gradient_blocks)
    _logistic_moe_gradient_serial = _njit(_logistic_moe_gradient_blocks)
    _logistic_moe_gradient_parallel = _njit_parallel(_logistic_moe_gradient_blocks)

    def _n_gradient_blocks(n_rows):
        return max(1, -(-n_rows // _GRADIENT_BLOCK_ROWS))

    def gaussian_moe_gradient_numba(gate_logits, means, Y, log_var, sample_weight):
        """Numba twin of :func:`gaussian_moe_gradient_numpy`."""
        gate_logits = np.ascontiguousarray(gate_logits, dtype=np.float64)
        means = np.ascontiguousarray(means, dtype=np.float64)
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        log_var = np.ascontiguousarray(log_var, dtype=np.float64)
        sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        n, K, q = means.shape
        d_gate = np.empty((n, K))
        d_means = np.empty((n, K, q))
        parts = np.zeros((_n_gradient_blocks(n), K * q + 1))
        _pick(_gaussian_moe_gradient_serial, _gaussian_moe_gradient_parallel, n)(
            gate_logits, means, Y, log_var, sample_weight, d_gate, d_means, parts
        )
        total = parts.sum(axis=0)
        return float(total[K * q]), d_gate, d_means, total[: K * q].reshape(K, q)

    def logistic_moe_gradient_numba(gate_logits, expert_logits, codes, sample_weight):
        """Numba twin of :func:`logistic_moe_gradient_numpy`."""
        gate_logits = np.ascontiguousarray(gate_logits, dtype=np.float64)
        expert_logits = np.ascontiguousarray(expert_logits, dtype=np.float64)
        codes = np.ascontiguousarray(codes, dtype=np.intp)
        sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        n = gate_logits.shape[0]
        d_gate = np.empty_like(gate_logits)
        d_expert = np.empty_like(expert_logits)
        parts = np.zeros(_n_gradient_blocks(n))
        _pick(_logistic_moe_gradient_serial, _logistic_moe_gradient_parallel, n)(
            gate_logits, expert_logits, codes, sample_weight, d_gate, d_expert, parts
        )
        return float(parts.sum()), d_gate, d_expert

    gaussian_moe_gradient = gaussian_moe_gradient_numba
    logistic_moe_gradient = logistic_moe_gradient_numba
else:  # pragma: no cover
    gaussian_moe_gradient = gaussian_moe_gradient_numpy
    logistic_moe_gradient = logistic_moe_gradient_numpy


# --- logistic experts ---
#
# The classifier's default experts side by side: expert k's logits of its
# non-reference classes are columns offsets[k] .. offsets[k + 1] of one
# matrix Z (one product X @ D for all experts; its reference class, local
# class 0, has logit 0), and ``local[k, codes[i]]`` is row i's label among
# expert k's classes. One pass gives each expert's weighted loss ``-sum_i
# s_ik log p_k(y_i | x_i)``, the log-probability of each row's label (the
# E-step's input), and ``p - onehot(label)`` in its non-reference classes,
# from which the Newton step's gradient is one more product. The outputs are
# written into the caller's buffers: fresh arrays of this size cost their
# page faults at every call (at 1e6 rows and 8 experts, 190 MB).

_LOGISTIC_BLOCK_ROWS = 2048


def logistic_experts_pass_numpy(X, D, b, offsets, codes, local, s, log_label, residual):
    """NumPy reference of the logistic experts' pass.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    D, b : ndarrays of shape (d, M) and (M,)
        Coefficients and intercepts of the non-reference logits of all
        experts, ``Z = X @ D + b``, expert ``k`` in columns
        ``offsets[k]:offsets[k + 1]``.
    offsets : ndarray of shape (K + 1,)
    codes : ndarray of shape (n,)
        Label codes.
    local : ndarray of shape (K, n_codes)
        Each code's local class under each expert; -1 for a class the
        expert does not hold (probability 0, log-probability -inf).
    s : ndarray of shape (n, K)
        Weights of the loss; rows of weight 0 do not count (and are the
        only rows of a class their expert does not hold).
    log_label : ndarray of shape (n, K)
        Written: ``log p_k(y_i | x_i)``.
    residual : ndarray of shape (n, M)
        Written: ``p - onehot(label)`` in each expert's non-reference classes.

    Returns
    -------
    losses : ndarray of shape (K,)
    """
    Z = X @ D + b
    n = Z.shape[0]
    K = local.shape[0]
    losses = np.zeros(K)
    rows = np.arange(n)
    for k in range(K):
        z = np.hstack([np.zeros((n, 1)), Z[:, offsets[k] : offsets[k + 1]]])
        log_p = z - logsumexp(z, axis=1, keepdims=True)
        labels = local[k, codes]
        held = labels >= 0
        log_label[:, k] = np.where(held, log_p[rows, np.maximum(labels, 0)], -np.inf)
        onehot = np.zeros(z.shape)
        onehot[rows[held], labels[held]] = 1.0
        residual[:, offsets[k] : offsets[k + 1]] = (np.exp(log_p) - onehot)[:, 1:]
        keep = s[:, k] > 0
        losses[k] = -np.sum(s[keep, k] * log_label[keep, k])
    return losses


def logistic_gradient_sums_numpy(X, residual, log_label, S, expert_of_column):
    """NumPy reference of the logistic experts' loss and gradient sums.

    At the point of a :func:`logistic_experts_pass` (its ``residual`` and
    ``log_label``) with new weights ``S``: each expert's loss ``-sum_i
    S_ik log_label_ik`` (rows of weight 0 do not count), ``X^T R`` and the
    column sums of ``R = S[:, expert_of_column] * residual`` (the loss's
    gradient in every expert's raw coefficients and intercepts); shapes
    (K,), (d, M) and (M,).
    """
    R = residual * S[:, expert_of_column]
    losses = -np.einsum("ik,ik->k", S, np.where(S > 0, log_label, 0.0))
    return losses, X.T @ R, R.sum(axis=0)


if NUMBA_AVAILABLE:

    def _logistic_experts_blocks(
        X, D, bias, offsets, codes, local, s, log_label, residual, parts
    ):
        # parts[b, k]: block b's loss of expert k, summed in a fixed order.
        # Per block: its logits (a BLAS product, in cache), then per expert
        # the shifted logits (the reference class's -top first) through the
        # vectorised exponential at once
        n = X.shape[0]
        M = D.shape[1]
        K = local.shape[0]
        C_max = 1
        for k in range(K):
            C_max = max(C_max, offsets[k + 1] - offsets[k] + 1)
        for b in numba.prange(parts.shape[0]):
            start = b * _LOGISTIC_BLOCK_ROWS
            m = min(n, start + _LOGISTIC_BLOCK_ROWS) - start
            Z = np.dot(X[start : start + m], D)
            for r in range(m):
                for j in range(M):
                    Z[r, j] += bias[j]
            shifted = np.empty(m * C_max)
            e = np.empty(m * C_max)
            scratch = np.empty(m * C_max)
            for k in range(K):
                lo = offsets[k]
                C = offsets[k + 1] - lo + 1
                for r in range(m):
                    top = 0.0
                    for c in range(1, C):
                        if Z[r, lo + c - 1] > top:
                            top = Z[r, lo + c - 1]
                    shifted[r * C] = -top
                    for c in range(1, C):
                        shifted[r * C + c] = Z[r, lo + c - 1] - top
                _exp_nonpositive(shifted, e, scratch, m * C)
                loss = 0.0
                for r in range(m):
                    i = start + r
                    total = 0.0
                    for c in range(C):
                        total += e[r * C + c]
                    inv = 1.0 / total
                    label = local[k, codes[i]]
                    if label >= 0:
                        lp = shifted[r * C + label] - math.log(total)
                    else:
                        lp = -np.inf
                    log_label[i, k] = lp
                    for c in range(1, C):
                        p = e[r * C + c] * inv
                        residual[i, lo + c - 1] = p - 1.0 if c == label else p
                    if s[i, k] > 0:
                        loss -= s[i, k] * lp
                parts[b, k] = loss

    _logistic_experts_serial = _njit(_logistic_experts_blocks)
    _logistic_experts_parallel = _njit_parallel(_logistic_experts_blocks)

    def logistic_experts_pass_numba(
        X, D, b, offsets, codes, local, s, log_label, residual
    ):
        """Numba twin of :func:`logistic_experts_pass_numpy`."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        D = np.ascontiguousarray(D, dtype=np.float64)
        b = np.ascontiguousarray(b, dtype=np.float64)
        offsets = np.ascontiguousarray(offsets, dtype=np.intp)
        codes = np.ascontiguousarray(codes, dtype=np.intp)
        local = np.ascontiguousarray(local, dtype=np.intp)
        s = np.ascontiguousarray(s, dtype=np.float64)
        for buffer in (log_label, residual):
            if not (
                buffer.flags.c_contiguous and buffer.dtype == np.float64
            ):  # pragma: no cover - callers pass their own C buffers
                raise ValueError("log_label and residual must be C float64 arrays.")
        n = X.shape[0]
        parts = np.zeros((max(1, -(-n // _LOGISTIC_BLOCK_ROWS)), local.shape[0]))
        with single_threaded_blas():  # the blocks' products run on the threads
            _pick(_logistic_experts_serial, _logistic_experts_parallel, n)(
                X, D, b, offsets, codes, local, s, log_label, residual, parts
            )
        return parts.sum(axis=0)

    def _logistic_gradient_blocks(
        X, residual, log_label, S, expert_of_column, parts, losses
    ):
        # parts[b, :d] collects block b's X^T R, parts[b, d] its column sums
        # of R = S[:, expert] * residual, made block by block in cache;
        # losses[b, k] its loss of expert k
        n, d = X.shape
        M = residual.shape[1]
        K = S.shape[1]
        for b in numba.prange(parts.shape[0]):
            start = b * _LOGISTIC_BLOCK_ROWS
            m = min(n, start + _LOGISTIC_BLOCK_ROWS) - start
            R = np.empty((m, M))
            for r in range(m):
                i = start + r
                for j in range(M):
                    R[r, j] = residual[i, j] * S[i, expert_of_column[j]]
                    parts[b, d, j] += R[r, j]
                for k in range(K):
                    if S[i, k] > 0:
                        losses[b, k] -= S[i, k] * log_label[i, k]
            parts[b, :d] += np.dot(X[start : start + m].T, R)

    _logistic_gradient_serial = _njit(_logistic_gradient_blocks)
    _logistic_gradient_parallel = _njit_parallel(_logistic_gradient_blocks)

    def logistic_gradient_sums_numba(X, residual, log_label, S, expert_of_column):
        """Numba twin of :func:`logistic_gradient_sums_numpy`."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        residual = np.ascontiguousarray(residual, dtype=np.float64)
        log_label = np.ascontiguousarray(log_label, dtype=np.float64)
        S = np.ascontiguousarray(S, dtype=np.float64)
        expert_of_column = np.ascontiguousarray(expert_of_column, dtype=np.intp)
        n, d = X.shape
        n_blocks = max(1, -(-n // _LOGISTIC_BLOCK_ROWS))
        parts = np.zeros((n_blocks, d + 1, residual.shape[1]))
        losses = np.zeros((n_blocks, S.shape[1]))
        with single_threaded_blas():
            _pick(_logistic_gradient_serial, _logistic_gradient_parallel, n)(
                X, residual, log_label, S, expert_of_column, parts, losses
            )
        total = parts.sum(axis=0)
        return losses.sum(axis=0), total[:d], total[d]

    logistic_experts_pass = logistic_experts_pass_numba
    logistic_gradient_sums = logistic_gradient_sums_numba
else:  # pragma: no cover
    logistic_experts_pass = logistic_experts_pass_numpy
    logistic_gradient_sums = logistic_gradient_sums_numpy


# The classifier's E-step, fused with the gate's line-search test and the
# gate's next gradient, as the regressor's ``em_pass`` fuses them: at a
# trial point of the linear gate, with the labels' log-probabilities under
# the experts just stepped, one pass gives the trial's loss against the
# responsibilities the M-step used (its Armijo test), the new
# responsibilities and row log-likelihoods (the E-step, if the trial is
# taken), and the gate's loss and gradient against them (the next M-step's
# first evaluation). Sums go by fixed parts of rows, as ``em_pass``'s.


def classifier_pass_numpy(
    X, mean, scale, theta, log_label, sample_weight, log_floor, previous=None
):
    """NumPy reference of the classifier's fused pass.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    mean, scale : ndarrays of shape (d,)
        The gate's standardisation of the inputs.
    theta : ndarray of shape (d + 1, K - 1)
        The gate's free block (see :func:`gate_objective_numpy`).
    log_label : ndarray of shape (n, K)
        ``log p_k(y_i | x_i)``, raised to ``log_floor`` where below it.
    sample_weight : ndarray of shape (n,)
    log_floor : float
    previous : ndarray of shape (n, K), default=None
        The responsibilities of the M-step, for the trial's loss.

    Returns
    -------
    resp, row_ll : ndarrays of shape (n, K) and (n,)
        The posterior at the gate ``theta`` and these experts (see
        :func:`responsibilities_numpy`).
    gate_grad : ndarray of shape (d + 1, K - 1)
        ``sum_i w_i (g_i - resp_i) z_i`` in the gate's parameters.
    previous_loss, loss, log_likelihood : float
        ``-sum_i w_i sum_k t_ik log g_ik`` for ``t = previous`` (NaN
        without it) and ``t = resp``, and ``sum_i w_i row_ll_i``.
    """
    Xs = (X - mean) / scale
    logits = np.zeros((X.shape[0], theta.shape[1] + 1))
    logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
    log_g = log_softmax_numpy(logits)
    previous_loss = np.nan
    if previous is not None:
        previous_loss = weighted_cross_entropy(log_g, previous, sample_weight)
    resp, row_ll = responsibilities_numpy(log_g, np.maximum(log_label, log_floor))
    loss, dlogits = _loss_from_log_proba(log_g, resp, sample_weight)
    gate_grad = np.empty_like(theta)
    gate_grad[:-1] = Xs.T @ dlogits[:, 1:]
    gate_grad[-1] = dlogits[:, 1:].sum(axis=0)
    log_likelihood = float(sample_weight @ row_ll)
    return resp, row_ll, gate_grad, previous_loss, loss, log_likelihood


if NUMBA_AVAILABLE:

    def _classifier_pass_parts(
        X,
        weight,
        mean,
        inv_scale,
        theta,
        log_label,
        log_floor,
        previous,
        block,
        resp,
        row_ll,
        grad_parts,
        scalar_parts,
    ):
        # fixed parts of _GRAM_PART_ROWS rows, blocks of ``block`` rows in
        # cache; the two products (logits, gradient) are BLAS calls, the
        # exponentials of a block go through the vectorised exp at once.
        # ``previous`` has no rows when there is none
        n, d = X.shape
        K1 = theta.shape[1]
        K = K1 + 1
        has_previous = previous.shape[0] > 0
        gate_coef = np.ascontiguousarray(theta[:d])
        for part in numba.prange(grad_parts.shape[0]):
            grad = grad_parts[part]
            xs_block = np.empty((block, d))
            dlogit_block = np.empty((block, K1))
            exponents = np.empty(block * K)
            powers = np.empty(block * K)
            scratch = np.empty(block * K)
            log_g = np.empty((block, K))
            tops = np.empty(block)
            loss_previous = 0.0
            loss = 0.0
            ll = 0.0
            lo = part * _GRAM_PART_ROWS
            hi = min(n, lo + _GRAM_PART_ROWS)
            for start in range(lo, hi, block):
                m = min(hi, start + block) - start
                xs = xs_block[:m]
                dlogit = dlogit_block[:m]
                # the gate's log-softmax, expert 0 the reference
                _gate_block_exponents(
                    X, start, m, mean, inv_scale, gate_coef, theta[d], xs, exponents
                )
                _exp_nonpositive(exponents, powers, scratch, m * K)
                for r in range(m):
                    i = start + r
                    total = 0.0
                    for k in range(K):
                        total += powers[r * K + k]
                    log_total = math.log(total)
                    inv_total = 1.0 / total
                    for k in range(K1):
                        # the gate's probabilities, until the E-step needs them
                        dlogit[r, k] = powers[r * K + k + 1] * inv_total
                    best = -np.inf
                    acc = 0.0
                    for k in range(K):
                        lg = exponents[r * K + k] - log_total
                        log_g[r, k] = lg
                        if has_previous:
                            acc += previous[i, k] * lg
                        lp = log_label[i, k]
                        v = lg + (lp if lp > log_floor else log_floor)
                        exponents[r * K + k] = v
                        if v > best:
                            best = v
                    loss_previous -= weight[i] * acc
                    tops[r] = best
                    for k in range(K):
                        exponents[r * K + k] -= best
                _exp_nonpositive(exponents, powers, scratch, m * K)
                for r in range(m):
                    i = start + r
                    w = weight[i]
                    _posterior_row_from_powers(powers, r, K, tops[r], resp, row_ll, i)
                    acc = 0.0
                    for k in range(K):
                        acc += resp[i, k] * log_g[r, k]
                    loss -= w * acc
                    ll += w * row_ll[i]
                    for k in range(K1):
                        # d loss / d logit_k = w (g_k - h_k)
                        v = w * (dlogit[r, k] - resp[i, k + 1])
                        dlogit[r, k] = v
                        grad[d, k] += v
                grad[:d] += np.dot(xs.T, dlogit)
            scalar_parts[part, 0] = loss_previous
            scalar_parts[part, 1] = loss
            scalar_parts[part, 2] = ll

    _classifier_pass_serial = _njit(_classifier_pass_parts)
    _classifier_pass_parallel = _njit_parallel(_classifier_pass_parts)

    def classifier_pass_numba(
        X, mean, scale, theta, log_label, sample_weight, log_floor, previous=None
    ):
        """Numba twin of :func:`classifier_pass_numpy`: one pass, in cache."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        n, d = X.shape
        mean = np.ascontiguousarray(mean, dtype=np.float64)
        inv_scale = 1.0 / np.asarray(scale, dtype=np.float64)
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        log_label = np.ascontiguousarray(log_label, dtype=np.float64)
        sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        K = theta.shape[1] + 1
        if previous is None:
            previous_rows = np.empty((0, K))
        else:
            previous_rows = np.ascontiguousarray(previous, dtype=np.float64)
        n_parts = max(1, -(-n // _GRAM_PART_ROWS))
        grad_parts = np.zeros((n_parts, d + 1, K - 1))
        scalar_parts = np.zeros((n_parts, 3))
        resp = np.empty((n, K))
        row_ll = np.empty(n)
        with single_threaded_blas():  # the blocks' products run on the threads
            _pick(_classifier_pass_serial, _classifier_pass_parallel, n)(
                X,
                sample_weight,
                mean,
                inv_scale,
                theta,
                log_label,
                float(log_floor),
                previous_rows,
                _LOGISTIC_BLOCK_ROWS,
                resp,
                row_ll,
                grad_parts,
                scalar_parts,
            )
        previous_loss, loss, ll = scalar_parts.sum(axis=0)
        if previous is None:
            previous_loss = np.nan
        return resp, row_ll, grad_parts.sum(axis=0), previous_loss, loss, ll

    classifier_pass = classifier_pass_numba
else:  # pragma: no cover
    classifier_pass = classifier_pass_numpy


# ---------------------------------------------------------------------------
# Sparse routing: each row's experts, and the gate's objective on them
# ---------------------------------------------------------------------------


def top_k_routes_numpy(log_gate, k):
    """Each row's ``k`` experts of largest gate weight, and the routed gate.

    Ties go to the expert of smaller index.

    Parameters
    ----------
    log_gate : ndarray of shape (n, K)
        The gate's log-probabilities.
    k : int
        Experts per row, ``1 <= k <= K``.

    Returns
    -------
    experts : ndarray of shape (n, k), int64
        Each row's experts, in increasing order.
    routed : ndarray of shape (n, K)
        ``log_gate`` restricted to each row's experts and renormalised there,
        ``-inf`` elsewhere.
    """
    top = np.argsort(-log_gate, axis=1, kind="stable")[:, :k]
    experts = np.sort(top, axis=1).astype(np.int64)
    picked = np.take_along_axis(log_gate, experts, axis=1)
    best = picked.max(axis=1, keepdims=True)
    lse = best + np.log(np.exp(picked - best).sum(axis=1, keepdims=True))
    routed = np.full(log_gate.shape, -np.inf)
    np.put_along_axis(routed, experts, picked - lse, axis=1)
    return experts, routed


def routed_gate_objective_numpy(
    X, mean, scale, theta, indptr, experts, targets, sample_weight
):
    """The routed gate's cross-entropy on fixed routes, and its gradient.

    Row ``i`` is routed to ``experts[indptr[i]:indptr[i + 1]]`` (its routes,
    CSR order) with targets ``targets[indptr[i]:indptr[i + 1]]``; its gate is
    the softmax of the linear gate's logits (as in
    :func:`gate_objective_numpy`) over those experts alone. Only the routed
    logits are computed: ``n_routes * (d + 1)`` products, not ``n K (d + 1)``.

    Returns
    -------
    loss : float
        ``-sum_i w_i sum_{k routed} t_ik log(g_ik / sum_{j routed} g_ij)``
        (no penalty).
    grad : ndarray of shape (d + 1, K - 1)
        Its gradient in ``theta``.
    """
    n, d = X.shape
    K = theta.shape[1] + 1
    Xs1 = np.empty((n, d + 1))
    Xs1[:, :d] = X if mean is None else (X - mean) / scale
    Xs1[:, d] = 1.0
    coef = np.zeros((K, d + 1))  # expert 0's logit is 0
    coef[1:] = theta.T
    counts = np.diff(indptr)
    row = np.repeat(np.arange(n), counts)
    logits = np.einsum("rj,rj->r", Xs1[row], coef[experts])
    starts = indptr[:-1][counts > 0]
    best = np.full(n, -np.inf)
    best[counts > 0] = np.maximum.reduceat(logits, starts)
    shifted = logits - best[row]
    sums = np.zeros(n)
    sums[counts > 0] = np.add.reduceat(np.exp(shifted), starts)
    log_g = shifted - np.log(sums)[row]
    target_sums = np.bincount(row, weights=targets, minlength=n)
    w = sample_weight[row]
    loss = -float(np.sum(w * targets * log_g))
    dlogits = w * (target_sums[row] * np.exp(log_g) - targets)
    by_expert = sparse.csr_array((dlogits, experts, indptr), shape=(n, K))
    grad = (by_expert.T @ Xs1)[1:].T
    return loss, np.ascontiguousarray(grad)


def routed_em_pass_numpy(
    X,
    Y,
    sample_weight,
    gate_mean,
    gate_scale,
    theta,
    coef,
    intercept,
    variances,
    k,
    previous,
    x_shift,
    y_shift,
):
    """One pass over the rows for an EM iteration under top-k routing.

    The arguments are those of :func:`em_pass_numpy`, and ``k``, the experts
    per row. Each row is routed to its ``k`` experts of largest gate weight
    (:func:`top_k_routes_numpy`); its gate is the softmax over them alone,
    and only they are evaluated. In one pass:

    - the E-step of the routed model: responsibilities (zero outside each
      row's experts) and per-row log-likelihoods;
    - the experts' Gram matrices of ``[X - x_shift, 1, Y - y_shift]``
      weighted by ``w * resp`` (each row enters its own experts' alone);
    - the routed gate's loss at ``previous = (experts, targets)``, the
      routes and responsibilities of the pass before (each of shape (n,
      k)): the line search's test of a trial point (nan when None);
    - the routed gate's loss against these responsibilities,
      ``-sum_i w_i sum_{k routed} resp_ik log g_ik`` (``g`` the routed gate),
      its gradient in every expert's logit coefficients (expert 0's too:
      the routed gate's block-Newton step moves every expert, see
      :func:`~skmoe._gates._softmax.routed_newton_step`) and the
      curvature of that step, ``sum_i w_i t_i (g_ik (1 - g_ik) + f) z_i
      z_i^T`` over each expert's routes (the diagonal blocks of its Hessian,
      and the floor ``f = _ROUTED_CURVATURE_FLOOR``; ``z_i`` the standardised
      row and a 1, ``t_i = sum_k resp_ik``).

    Returns
    -------
    experts : ndarray of shape (n, k), int64
        Each row's experts, in increasing order.
    route_resp : ndarray of shape (n, k)
        The responsibilities at them.
    resp : ndarray of shape (n, K)
    row_ll : ndarray of shape (n,)
    grams : ndarray of shape (K, p, p)
    gate_grad : ndarray of shape (d + 1, K)
    gate_curvature : ndarray of shape (K, d + 1, d + 1)
    scalars : tuple of float
        ``(gate loss, log-likelihood, gate loss at previous)``.
    expert_ll : ndarray of shape (K,)
        Each expert's part of the log-likelihood, ``sum_i w_i resp_ik
        row_ll_i``.
    """
    n = X.shape[0]
    K, q = variances.shape
    w = sample_weight
    Z = np.empty((n, X.shape[1] + 1))
    Z[:, :-1] = (X - gate_mean) / gate_scale
    Z[:, -1] = 1.0
    logits = np.zeros((n, K))
    logits[:, 1:] = Z @ theta
    experts, routed = top_k_routes_numpy(logits, k)
    means = (X @ coef + intercept).reshape(n, K, q)
    resp, row_ll = gaussian_responsibilities_numpy(routed, Y, means, variances)
    route_resp = np.take_along_axis(resp, experts, axis=1)
    grams = weighted_grams_numpy(X, x_shift, Y, resp * w[:, None], y_shift)
    g = np.exp(routed)  # 0 outside the routes
    totals = resp.sum(axis=1)
    dlogits = w[:, None] * (totals[:, None] * g - resp)
    routed_here = np.isfinite(routed)
    curvature = np.where(
        routed_here,
        w[:, None] * totals[:, None] * (g * (1.0 - g) + _ROUTED_CURVATURE_FLOOR),
        0.0,
    )
    loss = -float(w @ (resp * np.where(resp > 0, routed, 0.0)).sum(axis=1))
    loss_previous = np.nan
    if previous is not None:
        loss_previous = routed_gate_objective_numpy(
            X,
            gate_mean,
            gate_scale,
            theta,
            np.arange(0, n * k + 1, k),
            previous[0].ravel(),
            previous[1].ravel(),
            w,
        )[0]
    return (
        experts,
        route_resp,
        resp,
        row_ll,
        grams,
        Z.T @ dlogits,
        np.einsum("ik,ia,ib->kab", curvature, Z, Z),
        (loss, float(w @ row_ll), loss_previous),
        (w * row_ll) @ resp,
    )


def _linear_pass_inputs(
    X,
    Y,
    sample_weight,
    gate_mean,
    gate_scale,
    theta,
    coef,
    intercept,
    variances,
    x_shift,
    y_shift,
):
    """The linear passes' arguments as contiguous float64, and the gate's
    standardisation on ``X - x_shift``: ``(x - mean) / scale = (x - x_shift)
    * inv_scale + offset``; returns the arrays, then ``inv_scale, offset``."""

    def c(a):
        return np.ascontiguousarray(a, dtype=np.float64)

    x_shift = c(x_shift)
    inv_scale = 1.0 / c(gate_scale)
    offset = (x_shift - c(gate_mean)) * inv_scale
    arrays = (X, Y, sample_weight, theta, coef, intercept, variances)
    return (*map(c, arrays), x_shift, c(y_shift), inv_scale, offset)


# Rows per part of the routed gate's gradient: each part sums (K, d + 1).
_ROUTED_PART_ROWS = 4096
# Rows per block of the routed EM pass: each block sums its own part of the
# Gram matrices (fixed, so that the sums do not depend on the threads).
_ROUTED_PASS_BLOCK_ROWS = 8192
# Routes per tile block of its Gram matrices (ZT of 24 x 256 doubles, 48 KB).
_ROUTED_GRAM_ROWS = 256
# The routed gate's curvature per route, w t (g (1 - g) + floor) z z^T: the
# floor keeps the block-Newton step of an expert whose rows it already
# routes with g near 1 from growing without bound (its logits then push
# into rows it is not routed to, which its objective does not see; with
# no floor a 32-expert fit's log-likelihood fell to -906 per row)
_ROUTED_CURVATURE_FLOOR = 0.1

if NUMBA_AVAILABLE:

    def _top_k_of_row(values, i, k, best):
        # best[:k] = the columns of row i's k largest values, in decreasing
        # order, by insertion: a later column displaces only a strictly
        # larger one's. The k-th largest is held in a scalar (read through
        # best[k - 1] at every column, the selection took 9 of the routed
        # pass's 40 ms)
        m = 0
        kth = -np.inf
        for c in range(values.shape[1]):
            v = values[i, c]
            if m == k and not (v > kth):
                continue
            p = m if m < k else k - 1
            while p > 0 and v > values[i, best[p - 1]]:
                best[p] = best[p - 1]
                p -= 1
            best[p] = c
            if m < k:
                m += 1
            if m == k:
                kth = values[i, best[k - 1]]

    _top_k_of_row = numba.njit(cache=True, fastmath=False, nogil=True, inline="always")(
        _top_k_of_row
    )

    def _sort_increasing(best, k):
        # best[:k] sorted increasing, by insertion (k is small)
        for j in range(1, k):
            e = best[j]
            p = j
            while p > 0 and best[p - 1] > e:
                best[p] = best[p - 1]
                p -= 1
            best[p] = e

    _sort_increasing = numba.njit(
        cache=True, fastmath=False, nogil=True, inline="always"
    )(_sort_increasing)

    def _top_k_routes_rows(log_gate, k, experts, routed):
        n, K = log_gate.shape
        for i in numba.prange(n):
            best = experts[i]
            _top_k_of_row(log_gate, i, k, best)
            top = log_gate[i, best[0]]
            s = 0.0
            for j in range(k):
                s += math.exp(log_gate[i, best[j]] - top)
            lse = top + math.log(s)
            for c in range(K):
                routed[i, c] = -np.inf
            for j in range(k):
                routed[i, best[j]] = log_gate[i, best[j]] - lse
            _sort_increasing(best, k)  # as the NumPy twin's

    def _routed_gate_objective_parts(
        X, mean, inv_scale, coef, indptr, experts, targets, weight, rows, parts, losses
    ):
        # coef[k] = (standardised coefficients, intercept) of expert k's
        # logit (row 0 zeros); part b sums its rows' gradient into parts[b]
        n, d = X.shape
        K = coef.shape[0]
        for b in numba.prange(parts.shape[0]):
            xs = np.empty(d + 1)
            xs[d] = 1.0
            logits = np.empty(K)
            grad = parts[b]
            loss = 0.0
            for i in range(b * rows, min(n, (b + 1) * rows)):
                lo, hi = indptr[i], indptr[i + 1]
                if hi == lo:
                    continue
                for j in range(d):
                    xs[j] = (X[i, j] - mean[j]) * inv_scale[j]
                top = -np.inf
                for p in range(lo, hi):
                    e = experts[p]
                    v = 0.0
                    for j in range(d + 1):
                        v += coef[e, j] * xs[j]
                    logits[p - lo] = v
                    if v > top:
                        top = v
                s = 0.0
                total = 0.0
                for p in range(lo, hi):
                    s += math.exp(logits[p - lo] - top)
                    total += targets[p]
                lse = top + math.log(s)
                w = weight[i]
                acc = 0.0
                for p in range(lo, hi):
                    lg = logits[p - lo] - lse
                    acc += targets[p] * lg
                    dz = w * (total * math.exp(lg) - targets[p])
                    e = experts[p]
                    for j in range(d + 1):
                        grad[e, j] += dz * xs[j]
                loss -= w * acc
            losses[b] = loss

    _top_k_routes_serial = _njit(_top_k_routes_rows)
    _top_k_routes_parallel = _njit_parallel(_top_k_routes_rows)
    _routed_gate_objective_serial = _njit(_routed_gate_objective_parts)
    _routed_gate_objective_parallel = _njit_parallel(_routed_gate_objective_parts)

    def top_k_routes_numba(log_gate, k):
        """Numba twin of :func:`top_k_routes_numpy`: one pass over the rows."""
        log_gate = np.ascontiguousarray(log_gate, dtype=np.float64)
        n, K = log_gate.shape
        experts = np.empty((n, k), dtype=np.int64)
        routed = np.empty((n, K))
        _pick(_top_k_routes_serial, _top_k_routes_parallel, n)(
            log_gate, int(k), experts, routed
        )
        return experts, routed

    def routed_gate_objective_numba(
        X, mean, scale, theta, indptr, experts, targets, sample_weight
    ):
        """Numba twin of :func:`routed_gate_objective_numpy`: one pass, in cache."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        n, d = X.shape
        if mean is None:
            mean, scale = np.zeros(d), np.ones(d)
        mean = np.ascontiguousarray(mean, dtype=np.float64)
        inv_scale = 1.0 / np.asarray(scale, dtype=np.float64)
        K = theta.shape[1] + 1
        coef = np.zeros((K, d + 1))
        coef[1:] = theta.T
        n_parts = max(1, -(-n // _ROUTED_PART_ROWS))
        parts = np.zeros((n_parts, K, d + 1))
        losses = np.zeros(n_parts)
        _pick(_routed_gate_objective_serial, _routed_gate_objective_parallel, n)(
            X,
            mean,
            inv_scale,
            coef,
            np.ascontiguousarray(indptr, dtype=np.int64),
            np.ascontiguousarray(experts, dtype=np.int64),
            np.ascontiguousarray(targets, dtype=np.float64),
            np.ascontiguousarray(sample_weight, dtype=np.float64),
            _ROUTED_PART_ROWS,
            parts,
            losses,
        )
        grad = parts.sum(axis=0)[1:].T
        return float(losses.sum()), np.ascontiguousarray(grad)

    def _row_dot(A, row, x, n):
        # A[row, :n] @ x[:n], its sum reassociated so that it vectorises
        # (a sum in order waits on each add: 20 products took 80 cycles)
        s = 0.0
        for t in range(n):
            s += A[row, t] * x[t]
        return s

    # not inlined: an inlined body would take its caller's strict flags
    _row_dot = numba.njit(cache=True, fastmath={"reassoc", "contract"}, nogil=True)(
        _row_dot
    )

    def _routed_em_pass_parts(
        X,
        Y,
        weight,
        gate_coef,
        gate_offset,
        expert_coef,
        expert_offset,
        log_norm,
        inv_var,
        k,
        previous_experts,
        previous_targets,
        x_shift,
        y_shift,
        curvature_floor,
        block_rows,
        experts,
        route_resp,
        resp,
        row_ll,
        pair_parts,
        grad_parts,
        scalar_parts,
    ):
        # on z = (x - x_shift, 1, y - y_shift): the gate's logits are
        # gate_offset + z[:d] @ gate_coef (expert 0's column zero), output j
        # of expert e's mean expert_offset[e q + j] + expert_coef[e q + j] @
        # z[:d]; block b sums its rows into part b of each sum. The Gram
        # matrices: per expert, its routes' weights c = w resp and the
        # curvature's h (below), its rows gathered by expert into ZT, summed
        # in register tiles into pair_parts[b, e, 0] and [b, e, 1] (one
        # rank-one update per route, scattered into K experts' matrices,
        # took 3x as long)
        n, d = X.shape
        K = gate_offset.shape[0]
        q = Y.shape[1]
        P = d + 1 + q
        P_pad = pair_parts.shape[3]
        for b in numba.prange(pair_parts.shape[0]):
            lo = b * block_rows
            hi = min(n, lo + block_rows)
            route_c = np.empty((hi - lo) * k)
            route_h = np.empty((hi - lo) * k)
            counts = np.zeros(K + 1, dtype=np.int64)
            z = np.empty(P)
            logits = np.empty((1, K))  # a row, for _top_k_of_row
            best = np.empty(k, dtype=np.int64)
            log_g = np.empty(k)
            joint = np.empty(k)
            r = np.empty(k)
            grad = grad_parts[b]
            s = scalar_parts[b]
            for i in range(lo, hi):
                for j in range(d):
                    z[j] = X[i, j] - x_shift[j]
                z[d] = 1.0
                for j in range(q):
                    z[d + 1 + j] = Y[i, j] - y_shift[j]
                for e in range(K):
                    logits[0, e] = gate_offset[e]
                for j in range(d):
                    zj = z[j]
                    for e in range(K):
                        logits[0, e] += zj * gate_coef[j, e]
                _top_k_of_row(logits, 0, k, best)
                if previous_experts.shape[0]:
                    # the routed gate's loss at the previous routes
                    prev_top = -np.inf
                    for a in range(k):
                        v = logits[0, previous_experts[i, a]]
                        if v > prev_top:
                            prev_top = v
                    total = 0.0
                    for a in range(k):
                        total += math.exp(logits[0, previous_experts[i, a]] - prev_top)
                    prev_lse = prev_top + math.log(total)
                    acc = 0.0
                    for a in range(k):
                        t = previous_targets[i, a]
                        if t != 0.0:
                            acc += t * (logits[0, previous_experts[i, a]] - prev_lse)
                    s[2] -= weight[i] * acc
                top = logits[0, best[0]]
                _sort_increasing(best, k)  # the routes by expert
                total = 0.0
                for a in range(k):
                    total += math.exp(logits[0, best[a]] - top)
                lse = top + math.log(total)
                joint_top = -np.inf
                for a in range(k):
                    e = best[a]
                    log_g[a] = logits[0, e] - lse
                    quad = 0.0
                    for j in range(q):
                        o = e * q + j
                        mu = expert_offset[o] + _row_dot(expert_coef, o, z, d)
                        res = Y[i, j] - mu
                        quad += res * res * inv_var[e, j]
                    joint[a] = log_g[a] + log_norm[e] - 0.5 * quad
                    if joint[a] > joint_top:
                        joint_top = joint[a]
                total = 0.0
                for a in range(k):
                    total += math.exp(joint[a] - joint_top)
                ll = joint_top + math.log(total)
                row_ll[i] = ll
                for e in range(K):
                    resp[i, e] = 0.0
                mass = 0.0
                for a in range(k):
                    ra = math.exp(joint[a] - ll)
                    if ra < RESPONSIBILITY_FLOOR:
                        ra = 0.0
                    r[a] = ra
                    mass += ra
                    experts[i, a] = best[a]
                    route_resp[i, a] = ra
                    resp[i, best[a]] = ra
                wi = weight[i]
                loss = 0.0
                for a in range(k):
                    e = best[a]
                    ra = r[a]
                    wr = wi * ra
                    route = (i - lo) * k + a
                    route_c[route] = wr
                    route_h[route] = 0.0
                    counts[e + 1] += 1
                    if wr != 0.0:
                        loss -= ra * log_g[a]
                        s[3 + e] += wr * ll
                    if wi == 0.0:
                        continue
                    ga = math.exp(log_g[a])
                    dz = wi * (mass * ga - ra)
                    for u in range(d + 1):
                        grad[e, u] += dz * z[u]
                    h = ga * (1.0 - ga) + curvature_floor
                    route_h[route] = wi * mass * h
                s[0] += wi * loss
                s[1] += wi * ll
            # the block's routes by expert (counting sort: rows increasing)
            for e in range(K):
                counts[e + 1] += counts[e]
            order = np.empty((hi - lo) * k, dtype=np.int64)
            fill = counts[:K].copy()
            for i in range(lo, hi):
                for a in range(k):
                    e = experts[i, a]
                    order[fill[e]] = (i - lo) * k + a
                    fill[e] += 1
            ZT = np.zeros((P_pad, _ROUTED_GRAM_ROWS))
            WT = np.empty((2, _ROUTED_GRAM_ROWS))
            for e in range(K):
                for start in range(counts[e], counts[e + 1], _ROUTED_GRAM_ROWS):
                    m = min(counts[e + 1], start + _ROUTED_GRAM_ROWS) - start
                    for t in range(m):
                        route = order[start + t]
                        _gram_block_row(X, x_shift, Y, y_shift, lo + route // k, t, ZT)
                        WT[0, t] = route_c[route]
                        WT[1, t] = route_h[route]
                    _gram_block_tiles(ZT, WT, m, pair_parts[b, e])

    _routed_em_pass_serial = _njit(_routed_em_pass_parts)
    _routed_em_pass_parallel = _njit_parallel(_routed_em_pass_parts)

    def routed_em_pass_numba(
        X,
        Y,
        sample_weight,
        gate_mean,
        gate_scale,
        theta,
        coef,
        intercept,
        variances,
        k,
        previous,
        x_shift,
        y_shift,
    ):
        """Numba twin of :func:`routed_em_pass_numpy`: the whole pass, once."""
        (
            X,
            Y,
            sample_weight,
            theta,
            coef,
            intercept,
            variances,
            x_shift,
            y_shift,
            inv_scale,
            offset,
        ) = _linear_pass_inputs(
            X,
            Y,
            sample_weight,
            gate_mean,
            gate_scale,
            theta,
            coef,
            intercept,
            variances,
            x_shift,
            y_shift,
        )
        n, d = X.shape
        K, q = variances.shape
        p = d + 1 + q
        # on z = x - x_shift: the gate's standardisation folded into its
        # coefficients, and the experts' means likewise
        gate_coef = np.zeros((d, K))
        gate_coef[:, 1:] = theta[:d] * inv_scale[:, None]
        gate_offset = np.zeros(K)
        gate_offset[1:] = theta[d] + offset @ theta[:d]
        n_parts = max(1, -(-n // _ROUTED_PASS_BLOCK_ROWS))
        experts = np.empty((n, k), dtype=np.int64)
        route_resp = np.empty((n, k))
        resp = np.empty((n, K))
        row_ll = np.empty(n)
        P = gram_padded_columns(p)
        pair_parts = np.zeros((n_parts, K, 2, P, P))
        grad_parts = np.zeros((n_parts, K, d + 1))
        scalar_parts = np.zeros((n_parts, 3 + K))
        if previous is None:
            previous_experts = np.empty((0, k), dtype=np.int64)
            previous_targets = np.empty((0, k))
        else:
            previous_experts = np.ascontiguousarray(previous[0], dtype=np.int64)
            previous_targets = np.ascontiguousarray(previous[1], dtype=np.float64)
        _pick(_routed_em_pass_serial, _routed_em_pass_parallel, n)(
            X,
            Y,
            sample_weight,
            gate_coef,
            gate_offset,
            np.ascontiguousarray(coef.T),
            intercept + x_shift @ coef,
            -0.5 * (q * math.log(2.0 * math.pi) + np.log(variances).sum(axis=1)),
            1.0 / variances,
            int(k),
            previous_experts,
            previous_targets,
            x_shift,
            y_shift,
            _ROUTED_CURVATURE_FLOOR,
            _ROUTED_PASS_BLOCK_ROWS,
            experts,
            route_resp,
            resp,
            row_ll,
            pair_parts,
            grad_parts,
            scalar_parts,
        )
        grams = gram_parts_total(pair_parts[:, :, 0], p)
        # back to the standardised rows: z_std = T z with T = [[diag(1 /
        # scale), offset], [0, 1]]
        T = np.zeros((d + 1, d + 1))
        T[np.arange(d), np.arange(d)] = inv_scale
        T[:d, d] = offset
        T[d, d] = 1.0
        grad = T @ grad_parts.sum(axis=0).T
        curvature = gram_parts_total(pair_parts[:, :, 1], d + 1)
        curvature = T @ curvature @ T.T  # (einsum: 5 ms of a 30 ms pass)
        totals = scalar_parts.sum(axis=0)
        return (
            experts,
            route_resp,
            resp,
            row_ll,
            grams,
            grad,
            curvature,
            (
                float(totals[0]),
                float(totals[1]),
                np.nan if previous is None else float(totals[2]),
            ),
            totals[3:],
        )

    top_k_routes = top_k_routes_numba
    routed_gate_objective = routed_gate_objective_numba
    routed_em_pass = routed_em_pass_numba
else:  # pragma: no cover
    top_k_routes = top_k_routes_numpy
    routed_gate_objective = routed_gate_objective_numpy
    routed_em_pass = routed_em_pass_numpy
