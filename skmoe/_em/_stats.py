"""Sufficient statistics of linear experts: weighted Gram matrices and their solves.

EM's M-step for LinearRegression and Ridge experts needs the data only
through each expert's responsibility-weighted Gram matrix of ``[X, 1, Y]``:
its normal equations and its residual sum of squares. They are built here in
one chunked pass for all experts (the in-memory backend), summed over chunks
(the Dask backend) or blended over batches (online EM), and solved in
closed form.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import linalg
from scipy.linalg import lapack
from sklearn.linear_model import LinearRegression, Ridge

from .._kernels import (
    linear_expert_system,
    linear_experts_from_grams,
    n_threads,
    single_threaded_blas,
)
from .._kernels import weighted_grams as kernel_weighted_grams
from .._sparse import is_sparse, sparse_weighted_grams

# Rows per chunk of the linear experts' predictions (see linear_expert_means).
_MEANS_CHUNK_ROWS = 8192

# Rows (about; evenly strided) whose mean centres the experts' Gram matrices.
_SHIFT_ROWS = 10_000

_CHOLESKY_ROUTINES = (lapack.dpotrf, lapack.dpocon, lapack.dpotrs)

# Most features for which closed_form_experts solves the plain experts in one
# kernel: its unblocked O(d^3) loops beat a LAPACK call per expert on small
# systems (0.2 against 0.5 ms for two experts of 50 features) and lose on
# wide ones (28 against 2.7 ms at 300).
_KERNEL_MAX_FEATURES = 32


def fast_linear_alpha(estimator):
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


def map_row_chunks(work, n, chunk):
    """Call ``work`` on each thread's share of the rows; return the results.

    The rows ``0 .. n`` go in chunks of ``chunk`` (slices), split in order
    into ``n_threads()`` shares of consecutive chunks (one share below four
    chunks per thread), each share one ``work(slices)`` call on its own
    thread; the results come back in order, so sums of them do not depend on
    timing. BLAS runs on one thread inside: the chunks' products are small,
    and threaded BLAS would idle spinning beside these threads.
    """
    starts = range(0, n, chunk)
    n_parts = max(1, min(n_threads(), len(starts) // 4))
    bounds = np.linspace(0, len(starts), n_parts + 1).astype(int)
    shares = [
        [slice(start, min(n, start + chunk)) for start in starts[lo:hi]]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    with single_threaded_blas():
        if n_parts == 1:
            return [work(shares[0])]
        with ThreadPoolExecutor(n_parts) as pool:
            return list(pool.map(work, shares))


def weighted_grams(X, x_shift, Y, weights, y_shift=None):
    """Weighted Gram matrices of ``Z = [X - x_shift, 1, Y - y_shift]`` for every expert.

    Returns ``G`` of shape (n_experts, p, p), ``p = n_features + 1 + n_outputs``,
    with ``G[k] = Z^T diag(weights[:, k]) Z``: in one pass over the rows it
    holds each expert's ``X0^T W X0``, ``X0^T W Y``, ``W``-weighted column sums
    and total weight (the kernel ``weighted_grams``: ``Z`` is never formed
    whole, each block of rows one BLAS product for all experts at once).
    """
    if y_shift is None:
        y_shift = np.zeros(Y.shape[1])
    if is_sparse(X):
        return sparse_weighted_grams(X, x_shift, Y, weights, y_shift)
    return kernel_weighted_grams(X, x_shift, Y, weights, y_shift)


# The minimum-norm solve of a singular Gram matrix drops its eigenvalues
# below this fraction of the largest: a Gram matrix holds them only to its
# round-off (about n eps relative, more where its centring cancels digits, as
# the sparse products' rank-one centring does), and the directions they span
# are noise. LinearRegression's lstsq on the design drops singular values
# below eps max(n, d), whose squares no Gram matrix resolves; with scipy's
# default (d eps here) the sums' order decided the coefficients of
# undetermined directions (weights against repeated rows differed by 0.26).
_GRAM_CUTOFF = 1e-12


def _solve_positive_definite(A, B):
    """``A^{-1} B`` by Cholesky, or None where ``A`` is singular to round-off.

    What ``scipy.linalg.solve(A, B, assume_a="pos")`` computes, and None
    where it raises or warns (not positive definite, or reciprocal condition
    number below machine epsilon), through the LAPACK routines themselves:
    the ``solve`` wrapper and its warning filter cost 5-10x the solve of a
    few-column system, a fifth of a small fit's M-step.
    """
    potrf, pocon, potrs = _CHOLESKY_ROUTINES
    factor, info = potrf(A, lower=False, clean=False)
    if info != 0:
        return None
    rcond, info = pocon(factor, np.abs(A).sum(axis=0).max())
    if info != 0 or not rcond >= np.finfo(np.float64).eps:
        return None
    coef, info = potrs(factor, B)
    return coef if info == 0 else None


def fit_linear_closed_form(template, alpha, G, x_shift, y_is_1d, y_shift=None):
    """Weighted least squares (plus ridge) through the normal equations.

    Hand-written because LinearRegression solves an SVD of the whole weighted
    design per call, several times the work of one X^T W X product; the
    result equals LinearRegression/Ridge with the expert's sample weights.
    ``G`` is the expert's weighted Gram matrix of ``[X0, 1, Y0]`` (see
    :func:`weighted_grams`), with ``X0 = X - x_shift`` and ``Y0 = Y -
    y_shift`` centred once per M-step for stability (``y_shift`` only for
    experts with an intercept; None: 0); the expert's own weighted mean is
    then removed by a rank-one correction.
    """
    fit_intercept = template.fit_intercept
    A, B, dx, dy = linear_expert_system(G, x_shift, alpha, fit_intercept)
    coef = _solve_positive_definite(A, B)
    if coef is None:
        # singular or ill-conditioned: minimum-norm solution, as lstsq gives
        coef = linalg.lstsq(A, B, cond=_GRAM_CUTOFF, check_finite=False)[0]
    if fit_intercept:
        intercept = dy - (dx + x_shift) @ coef
        if y_shift is not None:
            intercept = intercept + y_shift
    else:
        intercept = np.zeros(B.shape[1])
    return _fitted_linear(template, coef.T, intercept, y_is_1d)


def _fitted_linear(template, coef, intercept, y_is_1d):
    """A fitted copy of ``template`` with ``coef`` (q, d) and ``intercept`` (q,).

    A shallow copy of the unfitted template: clone() re-inspects the
    constructor's signature each time, ~10% of a small fit's M-step, and
    copy.copy goes through pickling's __reduce_ex__ (the type is exactly
    LinearRegression or Ridge here, see fast_linear_alpha).
    """
    est = object.__new__(type(template))
    est.__dict__.update(template.__dict__)
    est.coef_ = coef[0].copy() if y_is_1d else coef.copy()
    est.intercept_ = float(intercept[0]) if y_is_1d else intercept.copy()
    est.n_features_in_ = coef.shape[1]
    return est


# When centring an expert's Gram matrix on its own weighted mean cancels
# more than this fraction of a diagonal entry, the rank-one downdate in
# fit_linear_closed_form has lost too many digits (an expert concentrated
# far from the mean of all rows, e.g. its weight on one distinct row).
_CANCELLATION = 1e-6


def _column_spread(grams, x_shift):
    """Each column's spread under each expert's weights, from its Gram matrix.

    ``grams`` is a stack of Gram matrices of ``[X - x_shift, 1, Y]``, shape
    (n_experts, D, D). Returns ``(raw, centred, round_off)``, each of shape
    (n_experts, n_features): the weighted sum of squares about ``x_shift``,
    the same about the expert's own weighted mean (by the rank-one downdate
    that fit_linear_closed_form applies), and whether that spread is
    round-off beside the column's second moment about the origin (the
    expert sees one value of it). One helper for the per-expert check and
    the all-experts-at-once one, so the two cannot drift apart; the kernel
    ``linear_experts_from_grams`` repeats the same tests, in the same order
    of operations, for the experts it solves.
    """
    d = x_shift.shape[0]
    w_sum = grams[:, d, d, None]
    x_sum = grams[:, :d, d]
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = x_sum / w_sum
    raw = np.diagonal(grams, axis1=1, axis2=2)[:, :d]
    centred = raw - w_sum * dx * dx
    # sum_i w_i x_ij^2 about the origin: the scale of each entry's round-off
    second_moment = raw + 2 * x_shift * x_sum + w_sum * x_shift**2
    eps = np.finfo(np.float64).eps
    round_off = ~(centred > (8 * eps) ** 2 * second_moment)
    return raw, centred, round_off


def recentred_gram(G, x_shift, recompute):
    """An expert's Gram matrix made safe to solve: ``(shift, gram)``.

    ``G`` is centred on ``x_shift`` (the mean of all rows), shared by every
    expert so that one pass serves them all. Where the expert's own centring
    would cancel most of a diagonal entry, the Gram matrix is recomputed
    with the shift moved to the expert's weighted mean (``recompute(shift)``:
    one more pass, for this expert only; in memory or over the chunks).
    Columns whose spread under the expert's weights is round-off (the expert
    sees one value of them) are zeroed, so that their coefficient is the
    minimum-norm 0, as LinearRegression gives, rather than round-off noise
    amplified into a huge slope. One guard for every backend.
    """
    d = x_shift.shape[0]
    w_sum = G[d, d]
    if not w_sum > 0:
        return x_shift, G
    raw, centred, round_off = _column_spread(G[None], x_shift)
    if np.any(centred <= _CANCELLATION * raw):
        x_shift = x_shift + G[:d, d] / w_sum
        G = recompute(x_shift)
        round_off = _column_spread(G[None], x_shift)[2]
    flat = np.flatnonzero(round_off[0])
    if flat.size:
        G = G.copy()
        G[flat, :] = 0.0
        G[:, flat] = 0.0
    return x_shift, G


def plain_grams(grams, x_shift):
    """Which Gram matrices :func:`recentred_gram` would return as they are.

    The same tests, for all experts at once (one set of small array
    operations instead of one per expert): positive weight, no centring
    that cancels most of a diagonal entry, no column of round-off spread.
    """
    d = x_shift.shape[0]
    raw, centred, round_off = _column_spread(grams, x_shift)
    return (
        (grams[:, d, d] > 0)
        & np.all(centred > _CANCELLATION * raw, axis=1)
        & ~np.any(round_off, axis=1)
    )


def linear_expert_means(experts, X, n_outputs):
    """Predictions of the plain linear experts, all in one matrix product.

    ``LinearRegression`` and ``Ridge`` predict ``X @ coef_.T + intercept_``;
    stacking their coefficients makes the K predictions one BLAS product
    instead of K ``predict`` calls, each of which validates (and scans) all
    of ``X`` again. Returns ``(index, means)``: the experts done here and
    their predictions, shape (n_samples, len(index), n_outputs).
    """
    index = [
        k
        for k, est in enumerate(experts)
        if type(est) in (LinearRegression, Ridge) and hasattr(est, "coef_")
    ]
    if not index:
        return index, None
    d = X.shape[1]
    coef = np.concatenate([np.reshape(experts[k].coef_, (n_outputs, d)) for k in index])
    intercept = np.concatenate(
        [np.broadcast_to(experts[k].intercept_, (n_outputs,)) for k in index]
    )
    n = X.shape[0]
    if is_sparse(X):
        means = np.asarray(X @ coef.T) + intercept
        return index, means.reshape(n, len(index), n_outputs)
    means = np.empty((n, coef.shape[0]))
    coef_t = coef.T

    def part(share):
        # the product and the intercept chunk by chunk, while it is in cache
        for rows in share:
            np.dot(X[rows], coef_t, out=means[rows])
            means[rows] += intercept

    # in chunks over threads: 42 against 67 ms as one product at 1e6 rows,
    # 20 features, 8 experts
    map_row_chunks(part, n, _MEANS_CHUNK_ROWS)
    return index, means.reshape(n, len(index), n_outputs)


def gram_shifts(X, Y, templates):
    """The centres ``(x_shift, y_shift)`` of the experts' Gram matrices.

    A centre for the Gram matrices' stability, not an estimate: a strided
    subsample's means serve and skip a pass over ``X``. ``Y`` is centred
    only where every expert has an intercept (otherwise the model is
    anchored at y = 0).
    """
    step = max(1, X.shape[0] // _SHIFT_ROWS)
    rows = X[::step]
    # a product, not rows.mean(axis=0): NumPy's reduction down a few
    # columns cost 0.25 ms per M-step on 1e4 rows, a twentieth of one
    mean = np.full(rows.shape[0], 1.0 / rows.shape[0])
    x_shift = np.asarray(rows.T @ mean).ravel() if is_sparse(rows) else mean @ rows
    if all(t.fit_intercept for t in templates):
        y_shift = mean @ Y[::step]
    else:
        y_shift = np.zeros(Y.shape[1])
    return x_shift, y_shift


def routed_grams(X, x_shift, Y, weights, y_shift, rows):
    """Each expert's weighted Gram matrix (as :func:`weighted_grams`) summed
    over its own ``rows`` only: ``sum_k |rows_k|`` rows read, not ``n K``."""
    grams = []
    for k, r in enumerate(rows):
        w = np.ascontiguousarray(weights[r, k : k + 1])
        grams.append(weighted_grams(X[r], x_shift, Y[r], w, y_shift)[0])
    return np.stack(grams)


def closed_form_experts(
    templates, alphas, X, Y, weights, y_is_1d, *, grams=None, shifts=None, rows=None
):
    """Fit LinearRegression / Ridge experts from their weighted Gram matrices.

    One pass builds every expert's Gram matrix of ``[X - x_shift, 1, Y -
    y_shift]`` (or they are given, with their ``shifts``, as a fused EM pass
    made them); each is solved in closed form (re-centred on the expert's own
    mean where centring on the common one would cancel its digits).

    Parameters
    ----------
    templates : list of LinearRegression or Ridge
    alphas : list of float
        Each expert's ridge penalty (:func:`fast_linear_alpha`).
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_outputs)
    weights : ndarray of shape (n_samples, n_experts)
    y_is_1d : bool
    grams : ndarray of shape (n_experts, p, p), default=None
        The Gram matrices of ``weights``, where already made.
    shifts : tuple of (x_shift, y_shift), default=None
        Their centres (:func:`gram_shifts`); required with ``grams``.
    rows : list of ndarray, default=None
        Per expert, the only rows of positive weight (sparse routing): its
        Gram matrix is summed over them alone.

    Returns
    -------
    experts : list of fitted estimators
    weight_sums : tuple
        ``(centre, totals, centred_sums)``: ``totals[k] = sum_i weights[i,
        k]`` and ``centred_sums[k] = sum_i weights[i, k] (X[i] - centre)``,
        which the Gram matrices hold.
    variances : ndarray of shape (n_experts, n_outputs)
        Each expert's weighted mean squared residual, from the Gram matrix
        it was solved from (:func:`residual_variance_from_gram`).
    """
    x_shift, y_shift = gram_shifts(X, Y, templates) if shifts is None else shifts
    if grams is None and rows is not None:
        grams = routed_grams(X, x_shift, Y, weights, y_shift, rows)
    elif grams is None:
        grams = weighted_grams(X, x_shift, Y, weights, y_shift)
    d = x_shift.shape[0]
    weight_sums = (x_shift, grams[:, d, d].copy(), grams[:, :d, d].copy())
    # the plain experts at once, in one kernel; those it leaves (no weight,
    # a Gram matrix plain_grams would not pass, a system singular to
    # round-off) one by one below
    if d <= _KERNEL_MAX_FEATURES:
        coef, intercept, variances, solved = linear_experts_from_grams(
            grams,
            x_shift,
            y_shift,
            np.asarray(alphas, dtype=float),
            np.array([t.fit_intercept for t in templates], dtype=bool),
            _CANCELLATION,
        )
    else:
        variances = np.full((len(templates), grams.shape[1] - d - 1), np.inf)
        solved = np.zeros(len(templates), dtype=bool)
    plain = None if solved.all() else plain_grams(grams, x_shift)
    experts, solved_from = [], []
    for j, (template, alpha) in enumerate(zip(templates, alphas, strict=True)):
        if solved[j]:
            experts.append(_fitted_linear(template, coef[j], intercept[j], y_is_1d))
            continue
        shift, gram = x_shift, grams[j]
        if not plain[j]:
            w = np.ascontiguousarray(weights[:, j : j + 1])
            shift, gram = recentred_gram(
                gram,
                x_shift,
                lambda s, w=w: weighted_grams(X, s, Y, w, y_shift)[0],
            )
        solved_from.append((j, shift, gram))
        experts.append(
            fit_linear_closed_form(template, alpha, gram, shift, y_is_1d, y_shift)
        )
    for j, shift, gram in solved_from:
        variances[j] = residual_variances_from_grams(
            experts[j : j + 1], gram[None], shift, y_shift
        )[0]
    return experts, weight_sums, variances


def residual_variance_from_gram(expert, gram, x_shift, y_shift):
    """:func:`residual_variances_from_grams` of one expert: shape (n_outputs,)."""
    return residual_variances_from_grams([expert], gram[None], x_shift, y_shift)[0]


def residual_variances_from_grams(experts, grams, x_shift, y_shift):
    """Each output's weighted mean squared residual, from the Gram matrices.

    ``grams[k]`` is expert ``k``'s weighted Gram matrix of ``[X - x_shift,
    1, Y - y_shift]``. The sum of squares is taken about the expert's own
    weighted means (the blocks of the matrix downdated to them, as the
    closed-form solve does), ``S - 2 b^T B + b^T A b`` plus the weight times
    the squared mean residual, so that its round-off is that of the
    expert's spread, not of the targets' offsets. Divided by the expert's
    total weight (inf without any); shape (n_experts, n_outputs).
    """
    K, p, _ = grams.shape
    d = x_shift.shape[0]
    q = p - d - 1
    coef = np.stack(
        [np.reshape(np.asarray(e.coef_, dtype=float), (q, d)) for e in experts]
    )
    intercept = np.stack(
        [np.broadcast_to(np.asarray(e.intercept_, float), (q,)) for e in experts]
    )
    w = grams[:, d, d]
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = grams[:, :d, d] / w[:, None]  # means of X - x_shift, (K, d)
        my = grams[:, d, d + 1 :] / w[:, None]  # and of Y - y_shift, (K, q)
    A = grams[:, :d, :d] - w[:, None, None] * mx[:, :, None] * mx[:, None, :]
    B = grams[:, :d, d + 1 :] - w[:, None, None] * mx[:, :, None] * my[:, None, :]
    S = np.diagonal(grams, axis1=1, axis2=2)[:, d + 1 :] - w[:, None] * my * my
    # mean residual: the expert's mean target minus its prediction there
    c = (my + y_shift) - intercept - np.einsum("kod,kd->ko", coef, mx + x_shift)
    rss = S - 2 * np.einsum("kod,kdo->ko", coef, B)
    rss += np.einsum("kod,kde,koe->ko", coef, A, coef) + w[:, None] * c * c
    with np.errstate(divide="ignore", invalid="ignore"):
        variances = np.maximum(rss, 0.0) / w[:, None]
    variances[~(w > 0)] = np.inf
    return variances
