"""The Dask backend: EM streamed over the chunks of Dask arrays.

EM for linear experts and a linear gate needs the data only through sums
over rows: each expert's weighted Gram matrix of ``[X, 1, y]`` (its normal
equations and residual sum of squares), and the gate's cross-entropy and its
gradient. A pass runs the in-memory backend's fused kernel (``em_pass``) on
each chunk, the E-step at the current parameters and the sums the next
M-step needs, and adds the chunks' sums up in a fixed tree order, so memory
holds one chunk per worker and the result does not depend on the scheduler.
The engine's loop (``skmoe/_em/_loop.py``) is the in-memory one, and so is
the M-step: the experts solved from the Gram matrices, the gate's one
Newton step from the pass's gradient, its Hessian from an in-memory
subsample of the rows. The pass at the new parameters tests that step and
is the next E-step: one pass per iteration (a second only where the step
is halved). The passes go through ``dask.compute``: the threaded scheduler
by default, or a ``dask.distributed`` cluster when a Client is active.

Dask is imported only when a fit is given Dask arrays.
"""

import copy
from typing import NamedTuple

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._em._loop import EMResult
from .._em._start import (
    dead_experts,
    kmeans_labels,
    reseed_thresholds,
    scale_for_kmeans,
    smoothed_gate_targets,
    warn_reseeded,
)
from .._em._stats import (
    fit_linear_closed_form,
    plain_grams,
    recentred_gram,
    residual_variance_from_gram,
    weighted_grams,
)
from .._gates._softmax import (
    SoftmaxGateFit,
    finish_gate_step,
    gradient_newton_step,
    line_search_gate,
    newton_hessian_solver,
    one_step_warm_gate,
    routed_newton_step,
    softmax_preconditioner,
    standardised_sums,
)
from .._gates._solvers import lbfgs_minimize, newton_minimize
from .._kernels import (
    em_pass,
    gate_objective,
    linear_posterior,
    log_softmax,
    one_numba_thread,
    routed_em_pass,
    single_threaded_blas,
)
from .._likelihoods import GaussianLikelihood, noise_floor
from .._validation import check_extremes
from ._numpy import MixtureState, Prepared, linear_expert_arrays

# Rows of the in-memory subsample (evenly strided over the data) on which
# the k-means start, the re-seeding thresholds and the gate's Hessian are
# computed.
SUBSAMPLE_ROWS = 10_000

# Rows per block of the random start's draws (see StartSource._random).
_RANDOM_START_ROWS = 4096


def is_dask_collection(x):
    """Whether ``x`` is a Dask collection, by its protocol (no dask import)."""
    return callable(getattr(type(x), "__dask_graph__", None))


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def as_dask_array(da, a, name, row_chunks):
    if isinstance(a, da.Array):
        return a
    if is_dask_collection(a):
        raise TypeError(
            f"{name} is a {type(a).__name__}; out-of-core fitting takes Dask "
            f"arrays. Convert it with {name}.to_dask_array(lengths=True)."
        )
    a = np.asarray(a)
    return da.from_array(a, chunks=(row_chunks,) + a.shape[1:])


def check_arrays(estimator, X, y, sample_weight, warm, *, labels=False):
    """Dask arrays X (n, d), Y (n, n_outputs) and weights, aligned by chunk.

    With ``labels`` (the classifier), y stays 1-D and keeps its dtype.
    """
    import dask.array as da

    first = X if isinstance(X, da.Array) else y
    row_chunks = first.chunks[0] if isinstance(first, da.Array) else "auto"
    X = as_dask_array(da, X, "X", row_chunks)
    y = as_dask_array(da, y, "y", X.chunks[0])
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D Dask array for X, got {X.ndim}-D.")
    if labels and y.ndim != 1:
        raise ValueError(
            f"y must be a 1-D array of class labels, got {y.ndim}-D of shape {y.shape}."
        )
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got {y.ndim}-D.")
    if any(np.isnan(s) for s in X.shape + y.shape):
        raise ValueError(
            "X or y has unknown chunk sizes; call compute_chunk_sizes() on it "
            "(or to_dask_array(lengths=True) on a Dask DataFrame) first."
        )
    for name, a in (("X", X),) if labels else (("X", X), ("y", y)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}.")
    n, d = X.shape
    if y.shape[0] != n:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{n}, {y.shape[0]}]"
        )
    if d == 0:
        raise ValueError("X has 0 features; at least one is required.")
    if warm and d != estimator.n_features_in_:
        raise ValueError(
            f"X has {d} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    X = X.astype(np.float64).rechunk({1: -1})
    rows = X.chunks[0]
    if labels:
        Y = y.rechunk((rows,))
    else:
        Y = (y[:, None] if y.ndim == 1 else y).astype(np.float64).rechunk((rows, -1))
    if sample_weight is not None:
        sample_weight = as_dask_array(da, sample_weight, "sample_weight", rows)
        if sample_weight.shape != (n,):
            raise ValueError(
                f"sample_weight has shape {sample_weight.shape}; expected ({n},)."
            )
        sample_weight = sample_weight.astype(np.float64).rechunk((rows,))
    return X, Y, sample_weight, y.ndim == 1


# ---------------------------------------------------------------------------
# Passes over the chunks
# ---------------------------------------------------------------------------


def read_chunk(X, Y, w):
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    return X, Y, w


def add_sums(a, b):
    """Elementwise sum of two tuples of per-chunk statistics (None stays)."""
    return tuple(None if x is None else x + y for x, y in zip(a, b, strict=True))


class ChunkStream:
    """The row chunks of (X, Y, sample weight) and passes over them."""

    def __init__(self, X, Y, sample_weight):
        import dask

        self._dask = dask
        # the arrays' graphs as they are: a task that makes both X's and y's
        # chunk (a generator's, a file reader's) stays one task of the
        # pass; each array's graph optimised apart fused its own copy of
        # it, and every pass ran it twice
        xs, ys = (a.to_delayed(optimize_graph=False).ravel() for a in (X, Y))
        ws = (
            [None] * len(xs)
            if sample_weight is None
            else sample_weight.to_delayed(optimize_graph=False).ravel()
        )
        self.blocks = list(zip(xs, ys, ws, strict=True))

    def map_reduce(self, func, *args, combine=add_sums):
        """``combine`` over the chunks of ``func(X, Y, w, chunk_index, *args)``.

        The chunks' results are combined pairwise in a fixed tree, so the
        sum is the same, bit for bit, on any scheduler.
        """
        delayed = self._dask.delayed
        # each argument once in the graph, not once per chunk
        args = [delayed(a, traverse=False) for a in args]
        parts = [
            delayed(func, pure=True)(x, y, w, i, *args)
            for i, (x, y, w) in enumerate(self.blocks)
        ]
        while len(parts) > 1:
            pairs = [
                delayed(combine, pure=True)(parts[j], parts[j + 1])
                for j in range(0, len(parts) - 1, 2)
            ]
            parts = pairs + parts[len(parts) - len(parts) % 2 :]
        return self._dask.compute(parts[0])[0]


def moments_chunk(X, Y, w, index, rows):
    """A chunk's weighted count, mean and centred second moment of [X, Y],
    its checks, its total weight and its rows of the in-memory subsample
    (``rows = (chunk offsets, stride)``), these two as one-item lists, which
    the reduction concatenates in the chunks' order."""
    X, Y, w = read_chunk(X, Y, w)
    V = np.hstack([X, Y])
    bad = int(np.count_nonzero(~np.isfinite(V)) + np.count_nonzero(~np.isfinite(w)))
    negative = int(np.count_nonzero(w < 0))
    W = float(w.sum())
    mean = w @ V / W if W > 0 else np.zeros(V.shape[1])
    m2 = w @ (V - mean) ** 2
    if V.shape[0]:
        low, high = np.nanmin(V, axis=0), np.nanmax(V, axis=0)
    else:
        low, high = np.full(V.shape[1], np.inf), np.full(V.shape[1], -np.inf)
    positive = int(np.count_nonzero(w > 0))
    offsets, stride = rows
    sub = slice((-offsets[index]) % stride, None, stride)
    return (
        (len(w), positive, W, mean, m2, w @ Y**2, bad, negative, low, high),
        [W],
        # copies: views would hold every chunk in memory until the end
        [(X[sub].copy(), Y[sub].copy(), w[sub].copy())],
    )


def combine_moments(a, b):
    """Chan et al.'s pairwise update of weighted means and second moments;
    the lists of chunk weights and subsample rows concatenated."""
    n_a, pos_a, W_a, mean_a, m2_a, sq_a, bad_a, neg_a, lo_a, hi_a = a[0]
    n_b, pos_b, W_b, mean_b, m2_b, sq_b, bad_b, neg_b, lo_b, hi_b = b[0]
    W = W_a + W_b
    if W > 0:
        delta = mean_b - mean_a
        mean = mean_a + delta * (W_b / W)
        m2 = m2_a + m2_b + delta**2 * (W_a * W_b / W)
    else:
        mean, m2 = mean_a, m2_a + m2_b
    moments = (
        n_a + n_b,
        pos_a + pos_b,
        W,
        mean,
        m2,
        sq_a + sq_b,
        bad_a + bad_b,
        neg_a + neg_b,
        np.minimum(lo_a, lo_b),
        np.maximum(hi_a, hi_b),
    )
    return moments, a[1] + b[1], a[2] + b[2]


class StartSource:
    """Starting responsibilities of a chunk: nearest k-means centre or random.

    Rows are explained by nothing yet: their log-likelihoods are 0, so that
    a collapsed expert is re-seeded on the first rows, as in memory.
    """

    def __init__(
        self, n_experts, offsets, *, centres=None, scaling=None, seed=None, targets=True
    ):
        self.n_experts = n_experts
        self.offsets = offsets  # first row of each chunk
        self.centres = centres
        self.scaling = scaling
        self.seed = seed
        # whether k-means clusters the targets with the inputs (the
        # classifier's clusters are of the inputs alone)
        self.targets = targets

    def _random(self, start, stop):
        # drawn in fixed blocks of rows, each from its own seed, so that a
        # row's start does not depend on how the rows are chunked
        size = _RANDOM_START_ROWS
        blocks = range(start // size, (stop - 1) // size + 1)
        draws = np.concatenate(
            [
                np.random.RandomState([self.seed, b]).dirichlet(
                    np.ones(self.n_experts), size=size
                )
                for b in blocks
            ]
        )
        first = blocks[0] * size
        return draws[start - first : stop - first]

    def __call__(self, X, Y, w, index):
        m, K = X.shape[0], self.n_experts
        if K == 1:
            return np.ones((m, 1)), np.zeros(m)
        if self.centres is None:
            start = self.offsets[index]
            return self._random(start, start + m), np.zeros(m)
        Z = scale_for_kmeans(X, Y if self.targets else Y[:, :0], self.scaling)
        dist = (
            (Z**2).sum(axis=1)[:, None]
            - 2 * Z @ self.centres.T
            + (self.centres**2).sum(axis=1)
        )
        # a cluster the subsample left empty has no centre: no row goes there
        dist[:, ~np.all(np.isfinite(self.centres), axis=1)] = np.inf
        resp = np.zeros((m, K))
        resp[np.arange(m), np.argmin(dist, axis=1)] = 1.0
        return resp, np.zeros(m)


class _EStepSource:
    """A chunk's responsibilities at given parameters (the E-step).

    ``arrays`` are the parameters as :func:`em_pass` takes them: the linear
    gate's standardisation and parameter array, the experts' coefficients,
    intercepts and noise variances (see :func:`_pass_arrays`).
    """

    def __init__(self, arrays):
        self.arrays = arrays

    def __call__(self, X, Y, w, index):
        with one_numba_thread():
            return linear_posterior(X, Y, *self.arrays)


class _RoutedSource:
    """A chunk's routed E-step at given parameters (top-k routing).

    ``arrays`` as :class:`_EStepSource`'s, ``k`` experts per row, the Gram
    matrices' ``shifts``: :meth:`routed` runs the kernel
    :func:`routed_em_pass` on the chunk; called, it gives the
    responsibilities and row log-likelihoods, as the other sources do.
    """

    def __init__(self, arrays, k, shifts):
        self.arrays = arrays
        self.k = k
        self.shifts = shifts

    def routed(self, X, Y, w, previous=None):
        with one_numba_thread():
            return routed_em_pass(X, Y, w, *self.arrays, self.k, previous, *self.shifts)

    def __call__(self, X, Y, w, index):
        return self.routed(X, Y, w)[2:4]


def _routed_chunk(X, Y, w, index, source, previous):
    """A chunk's part of one routed EM pass at ``source``'s parameters: the
    experts' Gram matrices, the routed gate's gradient, curvature, loss and
    the log-likelihoods (see :func:`routed_em_pass`), the gate's mass and
    the rows of positive weight routed to each expert; with ``previous`` (a
    routed source, whose routes and responsibilities are recomputed here:
    the rows are read once), the gate's loss at its routes, the test of the
    gate's trial."""
    X, Y, w = read_chunk(X, Y, w)
    before = None if previous is None else previous.routed(X, Y, w)[:2]
    experts, _, resp, _, grams, grad, curvature, scalars, expert_ll = source.routed(
        X, Y, w, before
    )
    routed_rows = np.bincount(experts[w > 0].ravel(), minlength=resp.shape[1])
    gate_sum = gate_mass(X, w, source.arrays[:3])
    return grams, grad, curvature, np.array(scalars), expert_ll, gate_sum, routed_rows


def _pass_arrays(state, theta, n_outputs):
    """``state``'s parameters, its gate at ``theta``, as em_pass takes them."""
    gate = state.gate
    coef, intercept = linear_expert_arrays(
        state.experts, gate._mean.shape[0], n_outputs
    )
    return gate._mean, gate._scale, theta, coef, intercept, state.scale


class Reseeded:
    """Responsibilities of ``source`` with collapsed experts re-seeded.

    Dead expert ``j`` shares, half and half, the rows in the ``j``-th block
    of ``1 / (2 n_experts)`` of the weight, counted from the worst-explained:
    by row log-likelihood (below ``thresholds``, estimated on a subsample)
    or, where nothing is explained yet (a start), by row order, as the
    in-memory backend's stable sort of equal log-likelihoods gives.
    """

    def __init__(
        self, source, dead, *, thresholds=None, chunk_weights=None, share=None
    ):
        self.source = source
        self.dead = dead
        self.thresholds = thresholds
        self.chunk_weights = chunk_weights
        self.share = share

    def __call__(self, X, Y, w, index):
        resp, row_ll = self.source(X, Y, w, index)
        resp = resp.copy()
        if self.thresholds is not None:
            block = np.searchsorted(self.thresholds, row_ll, side="left")
        else:
            before = float(np.sum(self.chunk_weights[:index]))
            cumulative = before + np.cumsum(w)
            block = np.ceil(cumulative / self.share).astype(np.intp) - 1
            block[w <= 0] = len(self.dead)
        for j, k in enumerate(self.dead):
            rows = block == j
            resp[rows] *= 0.5
            resp[rows, k] += 0.5
        return resp, row_ll


class _Sums(NamedTuple):
    """One pass's sums over the rows, for the next M-step.

    The experts' weighted Gram matrices of ``[X - x_shift, 1, Y - y_shift]``
    and effective sample sizes, the log-likelihood (total and per expert),
    the summed gate probabilities, and the gate's unpenalised loss and
    gradient against the responsibilities at the gate the pass was made at
    (the gate's M-step's first evaluation; None with one expert).
    """

    grams: np.ndarray
    n_eff: np.ndarray
    log_likelihood: float
    expert_ll: np.ndarray
    gate_sum: np.ndarray
    gate_loss: object
    gate_grad: object
    subsample_resp: object = None
    # under top-k routing: the curvature of the gate's block-Newton step
    # (see routed_newton_step) and the rows routed to each expert
    gate_curvature: object = None
    routed_rows: object = None


def _source_chunk(X, Y, w, index, source, x_shift, y_shift, gate_arrays, rows):
    """A chunk's part of the :class:`_Sums` of responsibilities from ``source``
    (a start, or re-seeded ones), with the gate at ``gate_arrays``, its
    ``(mean, scale, theta)``; and, as a one-item list (lists concatenate in
    the reduction), the responsibilities of the chunk's rows in the
    in-memory subsample, ``rows = (chunk offsets, stride)``."""
    X, Y, w = read_chunk(X, Y, w)
    resp, row_ll = source(X, Y, w, index)
    offsets, stride = rows
    # copies: a view would hold the whole chunk's array until the end
    subsample_resp = [resp[(-offsets[index]) % stride :: stride].copy()]
    weights = resp * w[:, None]
    grams = weighted_grams(X, x_shift, Y - y_shift, weights)
    n_eff = weights.sum(axis=0)
    ll = float(w @ row_ll)
    ll_expert = (w * row_ll) @ resp
    mean, scale, theta = gate_arrays
    gate_sum = gate_mass(X, w, gate_arrays)
    loss = grad = None
    if resp.shape[1] > 1:
        loss, grad = gate_objective(X, mean, scale, theta, resp, w)
    return grams, n_eff, ll, ll_expert, gate_sum, loss, grad, subsample_resp


def gate_mass(X, w, gate_arrays):
    """The rows' weighted sum of the gate's probabilities at ``gate_arrays``,
    its ``(mean, scale, theta)``."""
    mean, scale, theta = gate_arrays
    logits = np.zeros((X.shape[0], theta.shape[1] + 1))
    logits[:, 1:] = ((X - mean) / scale) @ theta[:-1] + theta[-1]
    return w @ np.exp(log_softmax(logits))


def _fused_chunk(X, Y, w, index, previous, arrays, x_shift, y_shift):
    """A chunk's part of one fused EM pass (the kernel :func:`em_pass`).

    At the parameters ``arrays`` (see :class:`_EStepSource`): the E-step's
    sums for the next M-step (the experts' Gram matrices, the gate's own
    weighted sums and its loss, the log-likelihoods) and, where
    ``previous`` (a source of the last M-step's responsibilities,
    recomputed here from their parameters: the rows are read once) is
    given, the gate's loss against those, the test of the gate's trial.
    """
    X, Y, w = read_chunk(X, Y, w)
    before = None if previous is None else previous(X, Y, w, index)[0]
    with one_numba_thread():
        _, _, grams, gate_sums, scalars, expert_ll = em_pass(
            X, Y, w, *arrays, before, x_shift, y_shift
        )
    return grams, gate_sums, np.array(scalars), expert_ll


def _expert_gram_chunk(X, Y, w, index, source, k, x_shift, y_shift):
    """A chunk's part of expert ``k``'s Gram matrix about ``x_shift``."""
    X, Y, w = read_chunk(X, Y, w)
    resp, _ = source(X, Y, w, index)
    weights = np.ascontiguousarray(resp[:, k : k + 1] * w[:, None])
    return (weighted_grams(X, x_shift, Y - y_shift, weights)[0],)


def _gate_chunk(X, Y, w, index, source, mean, scale, theta):
    """A chunk's gate cross-entropy and gradient at ``theta``."""
    X, Y, w = read_chunk(X, Y, w)
    resp, _ = source(X, Y, w, index)
    return gate_objective(X, mean, scale, theta, resp, w)


def initial_gate(make_gate, gate_seed, setup, n_experts):
    """An unfitted linear gate, standardised by the moments pass, at zero."""
    gate = make_gate(gate_seed)
    gate._set_scaler(setup["x_mean"], setup["x_std"])
    gate._theta = np.zeros((setup["x_mean"].shape[0] + 1, n_experts - 1))
    gate._set_public()
    return gate


def start_source(setup, n_experts, init, restart, random_state, targets=True):
    """The :class:`StartSource` of a run: k-means centres found on the
    in-memory subsample (of the inputs, and of the targets where
    ``targets``), or random responsibilities."""
    K = n_experts
    if K == 1 or init == "random" or restart > 0:
        return StartSource(
            K, setup["offsets"], seed=random_state.randint(np.iinfo(np.int32).max)
        )
    Xs, Ys, ws = setup["subsample"]
    keep = ws > 0
    Ts = Ys[keep] if targets else np.empty((int(keep.sum()), 0))
    Zs = scale_for_kmeans(Xs[keep], Ts, setup["kmeans_scaling"])
    labels = kmeans_labels(Zs, ws[keep], K, random_state)
    centres = np.full((K, Zs.shape[1]), np.nan)
    for k in range(K):
        mass = ws[keep][labels == k]
        if mass.sum() > 0:
            centres[k] = mass @ Zs[labels == k] / mass.sum()
    return StartSource(
        K,
        setup["offsets"],
        centres=centres,
        scaling=setup["kmeans_scaling"],
        targets=targets,
    )


class StreamPosterior(NamedTuple):
    """The responsibilities (a source computing them per chunk) and their sums.

    ``stats`` are their :class:`_Sums`, with the gate objective at
    ``gate_arrays``, the gate's ``(mean, scale, theta)``, where the next
    M-step starts.
    """

    source: object
    stats: _Sums
    gate_arrays: tuple


def cold_gate_fit(gate, resp, subsample, total, counts, warm=False):
    """A run's first gate fit, on the in-memory subsample, no pass.

    As the in-memory backend's first fit (on at most ``COLD_GATE_MAX_ROWS``
    rows): against the smoothed targets of the start's responsibilities
    ``resp`` (the subsample's rows), the subsample's weights scaled to the
    ``total``; the same fit where the subsample is every row. The warm Newton
    steps of the iterations after it see every row. With ``warm``, the fit
    continues from ``gate`` on the targets as they are (a routed fit's
    M-step after experts were re-seeded).
    """
    Xs, _, ws = subsample
    gate = copy.deepcopy(gate)
    if gate._theta.shape[1] == 0 or not ws.sum() > 0:
        gate.n_iter_ = 0
        gate._set_public()
        return gate
    weights = ws * (total / ws.sum())
    targets = resp if warm else smoothed_gate_targets(resp)
    SoftmaxGateFit(Xs, weights, keep=False, counts=counts).fit(
        gate, np.ascontiguousarray(targets), warm
    )
    return gate


def fit_gate_streamed(gate, map_reduce, chunk, loss0, grad0, subsample, total):
    """A warm gate M-step of several Newton steps, as in memory.

    The first evaluation, ``loss0`` and ``grad0``, comes from the EM pass
    already made; each trial point is one pass, ``map_reduce(*chunk, mean,
    scale, theta)`` giving the gate's summed loss and gradient (the chunk's
    responsibilities recomputed there); the Hessian is estimated on the
    in-memory subsample, as the in-memory backend estimates it on a strided
    subsample.
    """
    gate = copy.deepcopy(gate)
    d1, K1 = gate._theta.shape
    if K1 == 0:
        gate.n_iter_ = 0
        gate._set_public()
        return gate
    alpha = float(gate.alpha)
    mean, scale = gate._mean, gate._scale

    def objective(flat, first=False):
        theta = flat.reshape(d1, K1)
        if first:
            loss, grad = loss0, grad0.copy()
        else:
            loss, grad = map_reduce(*chunk, mean, scale, theta)
            grad = grad.copy()
        W = theta[:-1]
        grad[:-1] += alpha * W
        loss = loss + 0.5 * alpha * np.sum(W * W)
        return loss / total, grad.ravel() / total

    Xs, _, ws = subsample
    max_iter = gate.max_iter
    if gate.warm_max_iter is not None:
        max_iter = min(max_iter, gate.warm_max_iter)
    with single_threaded_blas():
        hessian_solver = newton_hessian_solver(gate, Xs, ws, alpha, total)
        flat, n_iter, ok = newton_minimize(
            objective,
            hessian_solver,
            gate._theta.ravel().copy(),
            max_iter=max_iter,
            tol=gate.tol,
        )
        if not ok:
            gate._theta = flat.reshape(d1, K1)
            L = softmax_preconditioner(gate, Xs, ws, alpha, total)
            flat, n_iter = lbfgs_minimize(
                objective,
                flat,
                max_iter=gate.max_iter,
                tol=gate.tol,
                preconditioner=L,
            )
    gate._theta = flat.reshape(d1, K1)
    gate.n_iter_ = n_iter
    gate._set_public()
    return gate


# ---------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------


class StreamedEM:
    """What the streamed backends share: passes over the chunks, counted per
    run; soft EM only (see the capability table); restarts side by side."""

    # a run's passes wait on the cluster: restarts run side by side, each
    # from its own thread, so that one's tasks fill the others' gaps
    restarts_in_threads = True

    def __init__(self, stream, setup, likelihood, templates, make_gate):
        self.stream = stream
        self.setup = setup
        self.likelihood = likelihood
        self.templates = templates
        self.make_gate = make_gate
        self.total_weight = setup["total"]
        self.n_experts = len(templates)
        self.counts = {}
        self._handed = None
        self.router = None  # top-k routing in training (see use_router)

    def fresh(self):
        backend = copy.copy(self)
        backend.counts = {}
        backend._handed = None
        return backend

    def _map_reduce(self, func, *args):
        """A pass over the chunks (:meth:`ChunkStream.map_reduce`), counted."""
        self.counts["passes"] = self.counts.get("passes", 0) + 1
        return self.stream.map_reduce(func, *args)

    def assign(self, posterior, training, random_state):
        return posterior

    def log_likelihood(self, posterior):
        return posterior.stats.log_likelihood

    def classification_log_likelihood(self, posterior):  # pragma: no cover
        raise NotImplementedError("the streamed fit is soft EM")


class StreamedBackend(StreamedEM):
    """EM's statistics over the chunks of Dask arrays (linear experts).

    Parameters
    ----------
    stream : ChunkStream
    setup : dict
        What the moments pass and the subsample give: total weight, chunk
        offsets and weights, scalings, centring shifts, the subsample.
    likelihood : GaussianLikelihood
    templates : list of LinearRegression or Ridge
    alphas : list of float
        The experts' ridge penalties.
    make_gate : callable
    """

    def __init__(self, stream, setup, likelihood, templates, alphas, make_gate):
        super().__init__(stream, setup, likelihood, templates, make_gate)
        self.alphas = alphas

    @property
    def exact_m_steps(self):
        """Whether EM never descends (routed, the routes move with the gate)."""
        return self.router is None

    def use_router(self, router):
        """Route each row to its top-k experts in training (k >= 2; the plan
        refuses other routings here).

        Each iteration is one routed pass (:func:`_routed_chunk`) and the
        gate's block-Newton step from its sums, its trial tested by the next
        pass (the last pass's routes recomputed in each chunk from its
        parameters), which is also the E-step at the new parameters: one
        pass per iteration, a second only where the step is halved. As in
        memory, the first M-step and one after a re-seed fit the gate on the
        subsample's dense responsibilities.
        """
        self.router = router

    def _routed_pass(self, state, theta, previous=None):
        """The routed E-step at ``state``'s experts and the gate at
        ``theta``, and the next M-step's sums; with the gate's loss at the
        routes of ``previous`` (a routed source; NaN without it)."""
        setup = self.setup
        arrays = _pass_arrays(state, theta, self.likelihood.n_outputs)
        source = _RoutedSource(
            arrays, self.router.k, (setup["x_shift"], setup["y_shift"])
        )
        grams, grad, curvature, scalars, expert_ll, gate_sum, routed_rows = (
            self._map_reduce(_routed_chunk, source, previous)
        )
        d = setup["x_shift"].shape[0]
        stats = _Sums(
            grams,
            grams[:, d, d].copy(),
            float(scalars[1]),
            expert_ll,
            gate_sum,
            float(scalars[0]),
            grad,
            gate_curvature=curvature,
            routed_rows=routed_rows,
        )
        return StreamPosterior(source, stats, arrays[:3]), float(scalars[2])

    def _routed_m_step(self, state, posterior, warm_gate, experts, scale):
        """The M-step's gate under top-k routing (see :meth:`use_router`),
        the experts and their ``scale`` solved already; the new state."""
        source, stats, _ = posterior
        if not (warm_gate and stats.gate_curvature is not None):
            gate = cold_gate_fit(
                state.gate,
                stats.subsample_resp,
                self.setup["subsample"],
                self.total_weight,
                self.counts,
                warm=warm_gate,
            )
            return MixtureState(experts, gate, scale)
        new = MixtureState(experts, copy.deepcopy(state.gate), scale)

        def trial_pass(theta):
            trial, loss = self._routed_pass(new, theta, previous=source)
            self._handed = (new, trial)
            return loss

        routed_newton_step(
            new.gate,
            stats.gate_grad,
            stats.gate_curvature,
            stats.gate_loss,
            trial_pass,
            self.counts,
        )
        return new

    def warm_state(self, estimator):
        return MixtureState(
            estimator.experts_,
            estimator.gate_,
            self.likelihood.scale_of(estimator),
        )

    def _pass(self, source, gate_arrays):
        """A pass over the chunks: the :class:`_Sums` of ``source``'s
        responsibilities, the gate's objective at ``gate_arrays``."""
        setup = self.setup
        *stats, subsample_resp = self._map_reduce(
            _source_chunk,
            source,
            setup["x_shift"],
            setup["y_shift"],
            gate_arrays,
            (setup["offsets"], setup["stride"]),
        )
        sums = _Sums(*stats, subsample_resp=np.concatenate(subsample_resp))
        return StreamPosterior(source, sums, gate_arrays)

    def _fused_pass(self, state, theta, previous):
        """One fused pass at ``state``'s experts and the gate at ``theta``.

        Kept as the next E-step's result; returns the gate's loss against
        the responsibilities of ``previous`` (a source; NaN without one).
        """
        setup = self.setup
        x_shift = setup["x_shift"]
        arrays = _pass_arrays(state, theta, self.likelihood.n_outputs)
        grams, gate_sums, scalars, expert_ll = self._map_reduce(
            _fused_chunk, previous, arrays, x_shift, setup["y_shift"]
        )
        d = x_shift.shape[0]
        n_eff = grams[:, d, d].copy()
        # the gradient: the gate's own sums minus the targets', which the
        # Gram matrices hold (as the in-memory fused M-step takes it)
        gate_grad = gate_sums - standardised_sums(
            state.gate, (x_shift, n_eff, grams[:, :d, d])
        )
        stats = _Sums(
            grams,
            n_eff,
            float(scalars[2]),
            expert_ll,
            np.r_[self.total_weight - gate_sums[d].sum(), gate_sums[d]],
            float(scalars[1]),
            gate_grad,
        )
        gate_arrays = arrays[:3]
        self._handed = (
            state,
            StreamPosterior(_EStepSource(arrays), stats, gate_arrays),
        )
        return float(scalars[0])

    def start(self, init, restart, random_state, gate_seed):
        gate = initial_gate(self.make_gate, gate_seed, self.setup, self.n_experts)
        source = start_source(self.setup, self.n_experts, init, restart, random_state)
        gate_arrays = (gate._mean, gate._scale, gate._theta)
        return MixtureState(None, gate, None), self._pass(source, gate_arrays)

    def reseed(self, posterior):
        source, stats, gate_arrays = posterior
        K = self.n_experts
        dead = dead_experts(stats.n_eff, self.total_weight)
        if dead.size == 0 or dead.size == K:
            return posterior
        if isinstance(source, (_EStepSource, _RoutedSource)):
            Xs, Ys, ws = self.setup["subsample"]
            _, row_ll = source(Xs, Ys, ws, None)
            thresholds = reseed_thresholds(row_ll, ws, dead.size, K)
            source = Reseeded(source, dead, thresholds=thresholds)
        else:
            source = Reseeded(
                source,
                dead,
                chunk_weights=self.setup["chunk_weights"],
                share=self.total_weight / (2 * K),
            )
        warn_reseeded(dead, stacklevel=4)
        return self._pass(source, gate_arrays)

    def m_step(self, state, posterior, warm_gate):
        """The experts from the pass's Gram matrices, then the gate.

        The gate's warm one-step Newton M-step (:func:`one_step_warm_gate`)
        starts from the pass's gradient, its Hessian from the in-memory
        subsample, and its trial point is tested by the next pass, which is
        also the E-step at the new parameters: one pass per iteration, a
        second only where the line search halves the step. A run's first,
        cold gate fit is made on the subsample (:meth:`_cold_gate`, no
        pass); warm M-steps of more than one Newton step take one pass per
        trial point, and the E-step one more.
        """
        setup = self.setup
        source, stats, _ = posterior
        grams = stats.grams
        x_shift, y_shift = setup["x_shift"], setup["y_shift"]
        y_is_1d = self.likelihood.y_is_1d
        plain = plain_grams(grams, x_shift)
        experts, variances = [], []
        for k, template in enumerate(self.templates):
            shift, G = x_shift, grams[k]
            if not plain[k]:
                # the in-memory guard, its recomputation one more pass
                shift, G = recentred_gram(
                    G,
                    x_shift,
                    lambda s, k=k: self._map_reduce(
                        _expert_gram_chunk, source, k, s, y_shift
                    )[0],
                )
            est = fit_linear_closed_form(
                template, self.alphas[k], G, shift, y_is_1d, y_shift
            )
            experts.append(est)
            variances.append(residual_variance_from_gram(est, G, shift, y_shift))
        var = np.stack(variances)
        scale = np.maximum(var, self.likelihood.noise_floor)
        if self.router is not None:
            return self._routed_m_step(state, posterior, warm_gate, experts, scale)
        if warm_gate and one_step_warm_gate(state.gate):
            gate = copy.deepcopy(state.gate)
            new = MixtureState(experts, gate, scale)
            Xs, _, ws = setup["subsample"]
            newton = gradient_newton_step(
                gate,
                Xs,
                ws,
                stats.gate_grad,
                stats.gate_loss,
                self.counts,
                total=self.total_weight,
            )
            if not self._full_step_ascends(state, posterior, new, newton):
                line_search_gate(
                    gate,
                    newton,
                    source,
                    lambda theta, previous: self._fused_pass(new, theta, previous),
                    self.total_weight,
                    self.counts,
                )
            return new
        if warm_gate:
            gate = fit_gate_streamed(
                state.gate,
                self._map_reduce,
                (_gate_chunk, source),
                stats.gate_loss,
                stats.gate_grad,
                setup["subsample"],
                self.total_weight,
            )
        else:
            gate = cold_gate_fit(
                state.gate,
                stats.subsample_resp,
                setup["subsample"],
                self.total_weight,
                self.counts,
            )
        return MixtureState(experts, gate, scale)

    def _full_step_ascends(self, state, posterior, new, newton):
        """Take the gate's full Newton step where EM's objective rises.

        The line search's test needs the last M-step's responsibilities
        (recomputed in each chunk from their parameters: an E-step more per
        chunk); the penalised log-likelihood the pass at the full step
        gives needs nothing more. Where it has not fallen, the step is an
        ascent of what EM monitors and is taken (``new.gate`` moves there,
        the pass is the E-step); else (False) the gate is left as it was
        for the line search. Where the maths allow both, this is the step
        the test takes; it can differ from it only where the full step
        fails the test and the objective rises all the same.
        """
        step, _, _, done = newton
        if done:
            return False
        gate = new.gate
        theta = gate._theta
        before = posterior.stats.log_likelihood - state.gate.penalty()
        gate._theta = theta + step
        self._fused_pass(new, gate._theta, None)
        after = self._handed[1].stats.log_likelihood - gate.penalty()
        if not after >= before:
            gate._theta = theta
            return False
        gate.n_iter_ = 1
        finish_gate_step(gate, self.counts)
        return True

    def e_step(self, state):
        handed, self._handed = self._handed, None
        if (
            handed is not None
            and handed[0] is state
            and handed[1].gate_arrays[2] is state.gate._theta
        ):
            # the M-step's last pass made it (routed: its accepted trial)
            return handed[1]
        if self.router is not None:
            return self._routed_pass(state, state.gate._theta)[0]
        self._fused_pass(state, state.gate._theta, None)
        return self._handed[1]

    def penalty(self, state):
        return state.gate.penalty()

    def result(self, state, posterior, *, curves, n_iter, converged):
        stats = posterior.stats
        summary = {
            "mean_gate": stats.gate_sum / self.total_weight,
            "effective_samples": stats.n_eff,
            "log_likelihood": stats.expert_ll,
        }
        if stats.routed_rows is not None:
            summary["routed_rows"] = stats.routed_rows
        return EMResult(
            experts=state.experts,
            gate=state.gate,
            scale=state.scale,
            log_likelihood=float(stats.log_likelihood),
            log_likelihood_curve=np.asarray(curves[0]),
            objective_curve=np.asarray(curves[1]),
            n_iter=n_iter,
            converged=converged,
            summary=summary,
            counts=dict(self.counts),
        )


def prepare_streamed(estimator, X, y, sample_weight, *, warm):
    """Check the Dask arrays and take their moments; see :class:`Prepared`."""
    X, Y, sample_weight, y_is_1d = check_arrays(estimator, X, y, sample_weight, warm)
    stream = ChunkStream(X, Y, sample_weight)
    # one pass: the moments, the chunks' weights, and an evenly strided
    # subsample held in memory for the k-means start, the re-seeding
    # thresholds, the first gate fit and the gate's Hessian
    offsets = np.r_[0, np.cumsum(X.chunks[0])[:-1]]
    step = max(1, -(-X.shape[0] // SUBSAMPLE_ROWS))
    moments, chunk_weights, subsample = stream.map_reduce(
        moments_chunk, (offsets, step), combine=combine_moments
    )
    n_rows, n_pos, total, mean, m2, sq, bad, negative, low, high = moments
    if bad:
        raise ValueError(
            f"Input contains NaN or infinity: {bad} value(s) in X, y or sample_weight."
        )
    d = X.shape[1]
    check_extremes(low[:d], high[:d], "X")
    check_extremes(low[d:], high[d:], "y")
    if negative:
        raise ValueError(f"sample_weight has {negative} negative value(s).")
    if total <= 0:
        raise ValueError("sample_weight sums to zero; nothing to fit.")
    var = m2 / total
    x_mean, x_var = mean[:d], var[:d]
    y_mean, y_var = mean[d:], var[d:]
    likelihood = GaussianLikelihood(
        noise_floor(y_mean, y_var, sq / total, n_rows), y_is_1d
    )
    x_std, y_std = np.sqrt(x_var), np.sqrt(y_var)
    Xs, Ys, ws = (np.concatenate(part) for part in zip(*subsample, strict=True))
    setup = {
        "total": float(total),
        "offsets": offsets,
        "chunk_weights": np.asarray(chunk_weights),
        "x_mean": x_mean,
        "x_std": x_std,
        # centring for the normal equations
        "x_shift": x_mean,
        # as the in-memory k-means start scales inputs and targets, from the
        # moments of all rows
        "kmeans_scaling": (
            x_mean,
            np.where(x_std == 0, 1.0, x_std),
            y_mean,
            np.where(y_std == 0, 1.0, y_std),
            # targets weigh as much as all inputs together
            np.sqrt(d / Y.shape[1]),
        ),
        "subsample": (Xs, Ys, ws),
        "stride": step,
    }

    def build(*, templates, expert_info, make_gate, n_jobs, tree_branching):
        # y is centred only where every expert has an intercept (otherwise
        # the model is anchored at y = 0)
        anchored = all(t.fit_intercept for t in templates)
        setup["y_shift"] = y_mean if anchored else np.zeros_like(y_mean)
        return StreamedBackend(
            stream, setup, likelihood, templates, expert_info, make_gate
        )

    attributes = {"n_features_in_": d, "feature_names_in_": None}
    return Prepared(likelihood, attributes, int(n_pos), build)


def _row_blocks(estimator, X):
    """Dask array X checked against a fitted estimator, one block per row chunk."""
    import dask.array as da

    check_is_fitted(estimator)
    X = as_dask_array(da, X, "X", "auto")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D Dask array for X, got {X.ndim}-D.")
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is "
            f"expecting {estimator.n_features_in_} features as input."
        )
    return X.rechunk({1: -1})


def map_row_blocks(estimator, method, X, n_columns=None, dtype=np.float64):
    """``method`` of a fitted estimator mapped over the row blocks of X, lazily.

    ``method(X_block)`` gives one row per row of the block: ``n_columns``
    columns, or a 1-D array where None. The result is a Dask array computed
    block by block, on the workers of a cluster where one is active.
    """
    X = _row_blocks(estimator, X)
    if n_columns is None:
        return X.map_blocks(method, dtype=dtype, drop_axis=1)
    return X.map_blocks(method, dtype=dtype, chunks=(X.chunks[0], (n_columns,)))


def predict_blocks(estimator, X, return_std=False):
    """``estimator.predict`` mapped over the row blocks of a Dask array X."""
    n_outputs = estimator._likelihood.n_outputs
    columns = None if estimator._likelihood.y_is_1d else n_outputs

    def part(i):
        def block(Xb):
            out = estimator.predict(Xb, return_std=return_std)
            return out[i] if return_std else out

        return map_row_blocks(estimator, block, X, columns)

    return (part(0), part(1)) if return_std else part(0)
