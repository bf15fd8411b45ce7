"""Out-of-core EM over Dask arrays for linear experts, chunk by chunk.

EM for linear experts and a linear gate needs the data only through sums
over rows: each expert's weighted Gram matrix of ``[X, 1, y]`` (its normal
equations and residual sum of squares), and the gate's cross-entropy, its
gradient and Hessian. A pass computes these per chunk (the E-step runs on
the chunk from the current parameters) and adds them up in a fixed tree
order, so memory holds one chunk per worker and the result does not depend
on the scheduler. The passes go through ``dask.compute``: the threaded
scheduler by default, or a ``dask.distributed`` cluster when a Client is
active.

Dask is imported only when a fit is given Dask arrays.
"""

import copy
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._base import (
    _DEAD_EXPERT_FRACTION,
    _kmeans_labels,
    _record_iteration,
    _seed_unset_random_states,
)
from ._experts import _fast_linear_alpha, _fit_linear_closed_form, _weighted_grams
from ._gate_builder import check_linear_gate
from ._gating import SoftmaxGate, mean_hessian_factor
from ._kernels import gate_hessian, gate_objective, single_threaded_blas
from ._regression import noise_floor

# Rows of the in-memory subsample (evenly strided over the data) on which
# the k-means start and the re-seeding of collapsed experts are computed.
_SUBSAMPLE_ROWS = 10_000

# Rows per block of the random start's draws (see _Start._random).
_RANDOM_START_ROWS = 4096


def is_dask_collection(x):
    """Whether ``x`` is a Dask collection, by its protocol (no dask import)."""
    return callable(getattr(type(x), "__dask_graph__", None))


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def _as_dask_array(da, a, name, row_chunks):
    if isinstance(a, da.Array):
        return a
    if is_dask_collection(a):
        raise TypeError(
            f"{name} is a {type(a).__name__}; out-of-core fitting takes Dask "
            f"arrays. Convert it with {name}.to_dask_array(lengths=True)."
        )
    a = np.asarray(a)
    return da.from_array(a, chunks=(row_chunks,) + a.shape[1:])


def _check_arrays(moe, X, y, sample_weight):
    """Dask arrays X (n, d), Y (n, n_outputs) and weights, aligned by chunk."""
    import dask.array as da

    first = X if isinstance(X, da.Array) else y
    row_chunks = first.chunks[0] if isinstance(first, da.Array) else "auto"
    X = _as_dask_array(da, X, "X", row_chunks)
    y = _as_dask_array(da, y, "y", X.chunks[0])
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D Dask array for X, got {X.ndim}-D.")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got {y.ndim}-D.")
    if any(np.isnan(s) for s in X.shape + y.shape):
        raise ValueError(
            "X or y has unknown chunk sizes; call compute_chunk_sizes() on it "
            "(or to_dask_array(lengths=True) on a Dask DataFrame) first."
        )
    for name, a in (("X", X), ("y", y)):
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
    if getattr(moe, "warm_start", False) and hasattr(moe, "experts_"):
        if d != moe.n_features_in_:
            raise ValueError(
                f"X has {d} features, but {type(moe).__name__} is expecting "
                f"{moe.n_features_in_} features as input."
            )
    X = X.astype(np.float64).rechunk({1: -1})
    rows = X.chunks[0]
    Y = (y[:, None] if y.ndim == 1 else y).astype(np.float64).rechunk((rows, -1))
    if sample_weight is not None:
        sample_weight = _as_dask_array(da, sample_weight, "sample_weight", rows)
        if sample_weight.shape != (n,):
            raise ValueError(
                f"sample_weight has shape {sample_weight.shape}; expected ({n},)."
            )
        sample_weight = sample_weight.astype(np.float64).rechunk((rows,))
    return X, Y, sample_weight, y.ndim == 1


# ---------------------------------------------------------------------------
# Passes over the chunks
# ---------------------------------------------------------------------------


def _chunk(X, Y, w):
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    return X, Y, w


def _add(a, b):
    """Elementwise sum of two tuples of per-chunk statistics (None stays)."""
    return tuple(None if x is None else x + y for x, y in zip(a, b, strict=True))


class _Stream:
    """The row chunks of (X, Y, sample weight) and passes over them."""

    def __init__(self, X, Y, sample_weight):
        import dask

        self._dask = dask
        xs = X.to_delayed().ravel()
        ys = Y.to_delayed().ravel()
        ws = (
            [None] * len(xs)
            if sample_weight is None
            else sample_weight.to_delayed().ravel()
        )
        self.blocks = list(zip(xs, ys, ws, strict=True))

    def map_reduce(self, func, *args, combine=_add):
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


def _moments_chunk(X, Y, w, index):
    """Weighted count, mean and centred second moment of [X, Y] in a chunk."""
    X, Y, w = _chunk(X, Y, w)
    V = np.hstack([X, Y])
    bad = int(np.count_nonzero(~np.isfinite(V)) + np.count_nonzero(~np.isfinite(w)))
    negative = int(np.count_nonzero(w < 0))
    W = float(w.sum())
    mean = w @ V / W if W > 0 else np.zeros(V.shape[1])
    m2 = w @ (V - mean) ** 2
    return len(w), int(np.count_nonzero(w > 0)), W, mean, m2, w @ Y**2, bad, negative


def _combine_moments(a, b):
    """Chan et al.'s pairwise update of weighted means and second moments."""
    n_a, pos_a, W_a, mean_a, m2_a, sq_a, bad_a, neg_a = a
    n_b, pos_b, W_b, mean_b, m2_b, sq_b, bad_b, neg_b = b
    W = W_a + W_b
    if W > 0:
        delta = mean_b - mean_a
        mean = mean_a + delta * (W_b / W)
        m2 = m2_a + m2_b + delta**2 * (W_a * W_b / W)
    else:
        mean, m2 = mean_a, m2_a + m2_b
    return (
        n_a + n_b,
        pos_a + pos_b,
        W,
        mean,
        m2,
        sq_a + sq_b,
        bad_a + bad_b,
        neg_a + neg_b,
    )


class _Start:
    """Starting responsibilities of a chunk: nearest k-means centre or random."""

    def __init__(
        self, n_experts, *, centres=None, scaling=None, seed=None, offsets=None
    ):
        self.n_experts = n_experts
        self.centres = centres
        self.scaling = scaling
        self.seed = seed
        self.offsets = offsets  # first row of each chunk

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

    def __call__(self, X, Y, index):
        m, K = X.shape[0], self.n_experts
        if K == 1:
            return np.ones((m, 1)), None
        if self.centres is None:
            start = self.offsets[index]
            return self._random(start, start + m), None
        Z = _kmeans_space(X, Y, self.scaling)
        dist = (
            (Z**2).sum(axis=1)[:, None]
            - 2 * Z @ self.centres.T
            + (self.centres**2).sum(axis=1)
        )
        resp = np.zeros((m, K))
        resp[np.arange(m), np.argmin(dist, axis=1)] = 1.0
        return resp, None


def _kmeans_space(X, Y, scaling):
    """Standardised inputs and targets, as the in-memory k-means start uses."""
    x_mean, x_std, t_mean, t_std, t_scale = scaling
    return np.hstack([(X - x_mean) / x_std, t_scale * (Y - t_mean) / t_std])


class _EStep:
    """A chunk's responsibilities from fitted parameters (the E-step), with
    collapsed experts re-seeded on the worst-explained rows."""

    def __init__(self, model, reseed=None):
        self.model = model
        # (dead experts, row log-likelihood thresholds) or None
        self.reseed = reseed

    def __call__(self, X, Y, index):
        model = self.model
        resp, row_ll = model._e_step(X, Y, model._expert_outputs(X))
        if self.reseed is not None:
            dead, thresholds = self.reseed
            block = np.searchsorted(thresholds, row_ll, side="left")
            for j, k in enumerate(dead):
                rows = block == j
                resp[rows] *= 0.5
                resp[rows, k] += 0.5
        return resp, row_ll


def _em_chunk(X, Y, w, index, source, x_shift, y_shift, gate, hessian):
    """A chunk's part of one EM iteration's sums.

    From the chunk's responsibilities: the experts' weighted Gram matrices,
    effective sample sizes, the log-likelihood (total and per expert), the
    summed gate probabilities, and the gate objective (and, with
    ``hessian``, its Hessian) at the gate's current parameters.
    """
    X, Y, w = _chunk(X, Y, w)
    resp, row_ll = source(X, Y, index)
    weights = resp * w[:, None]
    grams = _weighted_grams(X, x_shift, Y - y_shift, weights)
    n_eff = weights.sum(axis=0)
    if row_ll is None:
        ll = ll_expert = gate_sum = None
    else:
        ll = float(w @ row_ll)
        ll_expert = (w * row_ll) @ resp
        gate_sum = w @ gate.predict_proba(X)
    loss = grad = H = None
    if resp.shape[1] > 1:
        loss, grad = gate_objective(X, gate._mean, gate._scale, gate._theta, resp, w)
        if hessian:
            H = gate_hessian(X, gate._mean, gate._scale, gate._theta, w)
    return grams, n_eff, ll, ll_expert, gate_sum, loss, grad, H


def _gate_chunk(X, Y, w, index, source, mean, scale, theta):
    """A chunk's gate cross-entropy and gradient at ``theta``."""
    X, Y, w = _chunk(X, Y, w)
    resp, _ = source(X, Y, index)
    return gate_objective(X, mean, scale, theta, resp, w)


# ---------------------------------------------------------------------------
# M-step from the sums
# ---------------------------------------------------------------------------


def _fit_experts(templates, alphas, grams, x_shift, y_shift, y_is_1d):
    experts = []
    for template, alpha, G in zip(templates, alphas, grams, strict=True):
        est = _fit_linear_closed_form(template, alpha, G, x_shift, y_is_1d)
        # the Gram matrices hold y - y_shift
        if y_is_1d:
            est.intercept_ = float(est.intercept_ + y_shift[0])
        else:
            est.intercept_ = est.intercept_ + y_shift
        experts.append(est)
    return experts


def _noise_variance(experts, grams, x_shift, y_shift, floor):
    """Weighted mean squared residuals, ``v^T G v / n_eff``, from the Grams.

    The residual of output ``o`` is ``Z v`` with ``Z = [X - x_shift, 1,
    Y - y_shift]`` and ``v = (-coef, -(intercept - y_shift + x_shift @ coef),
    e_o)``; centring X and Y keeps the quadratic form well conditioned.
    """
    K, p, _ = grams.shape
    d = x_shift.shape[0]
    q = p - d - 1
    var = np.empty((K, q))
    for k, est in enumerate(experts):
        coef = np.reshape(est.coef_, (q, d))
        intercept = np.reshape(est.intercept_, q) - y_shift
        for o in range(q):
            v = np.zeros(p)
            v[:d] = -coef[o]
            v[d] = -(intercept[o] + x_shift @ coef[o])
            v[d + 1 + o] = 1.0
            var[k, o] = v @ grams[k] @ v / grams[k, d, d]
    return np.maximum(var, floor)


def _fit_gate(stream, gate, source, loss0, grad0, H0, total, warm):
    """The gate's M-step: L-BFGS on the summed objective, as SoftmaxGate.fit.

    Each evaluation is one pass (the chunk's responsibilities recomputed from
    ``source``); the one at the start and the preconditioner (on a warm
    start, the exact Hessian there) come from the EM pass already made. In
    memory the preconditioner is estimated on a strided subsample of the
    rows: the same (up to round-off) below a few thousand rows, a slightly
    different L-BFGS path to the same minimum above.
    """
    gate = copy.deepcopy(gate)
    d1, K1 = gate._theta.shape
    if K1 == 0:
        gate.n_iter_ = 0
        gate._set_public()
        return gate
    alpha = float(gate.alpha)
    theta0 = gate._theta.copy()

    def objective(flat):
        theta = flat.reshape(d1, K1)
        if np.array_equal(theta, theta0):
            loss, grad = loss0, grad0
        else:
            loss, grad = stream.map_reduce(
                _gate_chunk, source, gate._mean, gate._scale, theta
            )
        W = theta[:-1]
        grad = grad.copy()
        grad[:-1] += alpha * W
        loss = loss + 0.5 * alpha * np.sum(W * W)
        return loss / total, grad.ravel() / total

    with single_threaded_blas():
        L = mean_hessian_factor(H0, total, alpha, total, d1 - 1) if warm else None
        flat, gate.n_iter_ = gate._lbfgs(objective, L)
    gate._theta = flat.reshape(d1, K1)
    gate._set_public()
    return gate


def _reseed_thresholds(model, subsample, dead, n_experts):
    """Row log-likelihoods below which the rows go to each dead expert.

    The streamed counterpart of ``BaseMixtureOfExperts._reseed_dead_experts``:
    dead expert ``j`` takes the rows whose log-likelihood lies in the
    ``j``-th block of ``1 / (2 n_experts)`` of the weight, counted from the
    worst, with the quantiles estimated on the subsample.
    """
    Xs, Ys, ws = subsample
    _, row_ll = model._e_step(Xs, Ys, model._expert_outputs(Xs))
    order = np.argsort(row_ll, kind="stable")
    order = order[ws[order] > 0]
    cum = np.cumsum(ws[order]) / ws.sum()
    shares = np.arange(1, len(dead) + 1) / (2 * n_experts)
    at = np.minimum(np.searchsorted(cum, shares, side="left"), len(order) - 1)
    return dead, row_ll[order[at]]


# ---------------------------------------------------------------------------
# The EM loop
# ---------------------------------------------------------------------------


def _with_parameters(moe, experts, gate, var, y_is_1d):
    """A shallow copy of ``moe`` holding these parameters (for the E-step)."""
    model = copy.copy(moe)
    model.experts_ = experts
    model.gate_ = gate
    model.noise_variance_ = var[:, 0] if y_is_1d else var
    return model


def _start(moe, setup, subsample, random_state, restart):
    K = moe.n_experts_
    if K == 1 or moe.init == "random" or restart > 0:
        return _Start(
            K,
            seed=random_state.randint(np.iinfo(np.int32).max),
            offsets=setup["offsets"],
        )
    Xs, Ys, ws = subsample
    keep = ws > 0
    Zs = _kmeans_space(Xs[keep], Ys[keep], setup["kmeans_scaling"])
    labels = _kmeans_labels(Zs, ws[keep], K, random_state)
    centres = np.stack(
        [
            np.average(Zs[labels == k], axis=0, weights=ws[keep][labels == k])
            for k in range(K)
        ]
    )
    return _Start(K, centres=centres, scaling=setup["kmeans_scaling"])


def _streamed_em(moe, stream, setup, subsample, random_state, restart, warm):
    """One EM run over the chunks; returns (parameters, curve, n_iter,
    converged, summary)."""
    K = moe.n_experts_
    total, x_shift, y_shift = setup["total"], setup["x_shift"], setup["y_shift"]
    y_is_1d = moe._y_is_1d
    if warm:
        gate = copy.deepcopy(moe.gate_)
        var = moe._noise_variance_2d()
        model = _with_parameters(moe, moe.experts_, gate, var, y_is_1d)
        source = _EStep(model)
    else:
        gate = SoftmaxGate(alpha=moe.gate_alpha)
        gate._set_scaler(setup["x_mean"], setup["x_std"])
        gate._theta = np.zeros((x_shift.shape[0] + 1, K - 1))
        source = _start(moe, setup, subsample, random_state, restart)
    warm_gate = warm
    curve, objectives, prev, converged, n_iter = [], [], -np.inf, False, 0
    while True:
        stats = stream.map_reduce(
            _em_chunk, source, x_shift, y_shift, gate, warm_gate and K > 1
        )
        grams, n_eff, ll, ll_expert, gate_sum, loss0, grad0, H0 = stats
        if n_iter > 0:
            objective, change = _record_iteration(
                moe, n_iter, ll, ll - gate.penalty(), curve, objectives, total, prev
            )
            if abs(change) < moe.tol:
                converged = True
                break
            if n_iter == moe.max_iter:
                break
            prev = objective
        dead = np.flatnonzero(n_eff < _DEAD_EXPERT_FRACTION * total)
        if 0 < dead.size < K:
            if not isinstance(source, _EStep):
                raise ValueError(
                    f"Expert(s) {dead.tolist()} got no rows from the k-means "
                    "start on the subsample; use init='random' or fewer experts."
                )
            source = _EStep(
                source.model, _reseed_thresholds(source.model, subsample, dead, K)
            )
            warnings.warn(
                f"Expert(s) {dead.tolist()} collapsed (share of the total weight "
                f"below {_DEAD_EXPERT_FRACTION:g}) and were re-seeded on the "
                "worst-explained rows.",
                UserWarning,
                stacklevel=4,
            )
            stats = stream.map_reduce(
                _em_chunk, source, x_shift, y_shift, gate, warm_gate and K > 1
            )
            grams, n_eff, _, _, _, loss0, grad0, H0 = stats
        n_iter += 1
        experts = _fit_experts(
            moe._templates, setup["alphas"], grams, x_shift, y_shift, y_is_1d
        )
        var = _noise_variance(experts, grams, x_shift, y_shift, moe._noise_floor)
        gate = _fit_gate(stream, gate, source, loss0, grad0, H0, total, warm_gate)
        source = _EStep(_with_parameters(moe, experts, gate, var, y_is_1d))
        warm_gate = True
    model = source.model
    summary = {
        "mean_gate": gate_sum / total,
        "effective_samples": n_eff,
        "log_likelihood": ll_expert,
    }
    params = (model.experts_, model.gate_, model.noise_variance_)
    return params, np.asarray(curve), np.asarray(objectives), n_iter, converged, summary


def predict_blocks(moe, X, return_std=False):
    """``moe.predict`` mapped over the row blocks of a Dask array X."""
    import dask.array as da

    check_is_fitted(moe)
    X = _as_dask_array(da, X, "X", "auto")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D Dask array for X, got {X.ndim}-D.")
    X = X.rechunk({1: -1})
    n_outputs = moe._noise_variance_2d().shape[1]

    def part(i):
        def block(Xb):
            out = moe.predict(Xb, return_std=return_std)
            return out[i] if return_std else out

        if moe._y_is_1d:
            return X.map_blocks(block, dtype=np.float64, drop_axis=1)
        return X.map_blocks(block, dtype=np.float64, chunks=(X.chunks[0], (n_outputs,)))

    return (part(0), part(1)) if return_std else part(0)


def fit_streamed(moe, X, y, sample_weight=None):
    """Fit ``moe`` by EM streamed over the chunks of Dask arrays X and y.

    Called by ``fit`` when X or y is a Dask array; the fitted attributes are
    those of an in-memory fit, so the model predicts on NumPy inputs.
    """
    if moe._is_classifier_moe:
        raise TypeError(
            f"{type(moe).__name__} cannot fit Dask arrays out of core: the "
            "streamed EM is for MixtureOfExpertsRegressor with linear experts. "
            "Compute the arrays (X.compute()) to fit in memory."
        )
    check_linear_gate(moe, "EM over Dask arrays")
    if moe.training != "em":
        raise ValueError(
            f"training={moe.training!r} cannot run over Dask arrays; the "
            "streamed fit is soft EM (training='em')."
        )
    names, templates = moe._expert_templates()
    alphas = [_fast_linear_alpha(t) for t in templates]
    for name, template, alpha in zip(names, templates, alphas, strict=True):
        if alpha is None:
            raise ValueError(
                f"Expert {name!r} ({type(template).__name__}) cannot be fitted "
                "out of core: EM over a Dask array needs LinearRegression or "
                "Ridge (solver 'auto' or 'cholesky', positive=False) experts, "
                "which are fitted from summed per-chunk statistics. Compute the "
                "arrays (X.compute()) to fit other experts in memory."
            )
    warm = moe.warm_start and hasattr(moe, "experts_")
    K = len(templates)
    moe._check_n_experts(K, warm)
    X, Y, sample_weight, y_is_1d = _check_arrays(moe, X, y, sample_weight)
    if warm and Y.shape[1] != moe._noise_variance_2d().shape[1]:
        raise ValueError(
            f"y has {Y.shape[1]} output(s) but the model was fitted on "
            f"{moe._noise_variance_2d().shape[1]}."
        )
    stream = _Stream(X, Y, sample_weight)
    n_rows, n_pos, total, mean, m2, sq, bad, negative = stream.map_reduce(
        _moments_chunk, combine=_combine_moments
    )
    if bad:
        raise ValueError(
            f"Input contains NaN or infinity: {bad} value(s) in X, y or sample_weight."
        )
    if negative:
        raise ValueError(f"sample_weight has {negative} negative value(s).")
    if total <= 0:
        raise ValueError("sample_weight sums to zero; nothing to fit.")
    moe._check_n_samples(int(n_pos), K)

    d = X.shape[1]
    var = m2 / total
    x_mean, x_var = mean[:d], var[:d]
    y_mean, y_var = mean[d:], var[d:]
    if not warm:
        moe.n_features_in_ = d
        if hasattr(moe, "feature_names_in_"):
            del moe.feature_names_in_
    moe._y_is_1d = y_is_1d
    moe._noise_floor = noise_floor(y_mean, y_var, sq / total, n_rows)
    moe.n_experts_ = K
    moe.expert_names_ = names
    random_state = check_random_state(moe.random_state)
    moe._templates = [
        _seed_unset_random_states(clone(t), random_state) for t in templates
    ]
    x_std = np.sqrt(x_var)
    y_std = np.sqrt(y_var)
    setup = {
        "total": total,
        "offsets": np.r_[0, np.cumsum(X.chunks[0])[:-1]],
        "alphas": alphas,
        "x_mean": x_mean,
        "x_std": x_std,
        # centring for the normal equations; y only where every expert has
        # an intercept (otherwise the model is anchored at y = 0)
        "x_shift": x_mean,
        "y_shift": y_mean
        if all(t.fit_intercept for t in templates)
        else np.zeros_like(y_mean),
        # as BaseMixtureOfExperts._initial_resp: targets weigh as much as
        # all inputs together
        "kmeans_scaling": (
            x_mean,
            np.where(x_std == 0, 1.0, x_std),
            y_mean,
            np.where(y_std == 0, 1.0, y_std),
            np.sqrt(d / Y.shape[1]),
        ),
    }
    # an evenly strided subsample, held in memory, for the k-means start
    step = max(1, -(-n_rows // _SUBSAMPLE_ROWS))
    Xs, Ys = X[::step].compute(), Y[::step].compute()
    ws = np.ones(len(Xs)) if sample_weight is None else sample_weight[::step]
    subsample = (Xs, Ys, np.asarray(ws, dtype=np.float64))

    n_init = 1 if warm else moe.n_init
    seeds = random_state.randint(np.iinfo(np.int32).max, size=n_init)
    best = None
    for restart, seed in enumerate(seeds):
        run = _streamed_em(
            moe,
            stream,
            setup,
            subsample,
            np.random.RandomState(seed),
            restart,
            warm,
        )
        if best is None or run[1][-1] > best[1][-1]:
            best = run
    (experts, gate, noise), curve, objectives, n_iter, converged, summary = best
    moe.experts_, moe.gate_, moe.noise_variance_ = experts, gate, noise
    moe.log_likelihood_curve_ = curve
    moe.objective_curve_ = objectives
    moe.log_likelihood_ = float(curve[-1])
    moe.n_iter_ = n_iter
    moe.converged_ = converged
    moe._training_summary = summary
    if not converged:
        warnings.warn(
            f"EM did not converge in max_iter={moe.max_iter} iterations "
            f"(tol={moe.tol}); increase max_iter or tol, or try another "
            "initialisation.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return moe
