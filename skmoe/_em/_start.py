"""Where EM starts, and how it restarts a collapsed expert.

Starting responsibilities come from k-means on the standardised inputs and
targets (the first start), or from a flat Dirichlet (``init="random"`` and
the odd restarts) or random parameters (experts fitted on a few random
rows: the even restarts). An expert whose responsibility collapses is re-seeded
on the rows the mixture explains worst. The Dask backend applies the same
rules to a subsample and thresholds, so both live here.
"""

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances_argmin

from .._gates._hierarchical import tree_order
from .._kernels import weighted_lloyd

# An expert whose summed responsibility falls below this fraction of the total
# sample weight has collapsed: it is re-seeded rather than fitted on nothing.
DEAD_EXPERT_FRACTION = 1e-8

# The first gate fit of a run sees the starting responsibilities moved this
# far toward uniform (the experts see them as they are). With 0/1 k-means
# responsibilities a linear gate separates the k-means cells (convex, and
# linearly separable in x) exactly: its first fit chased infinite weights
# (100 Newton steps, 692 passes over 1e5 rows for 8 experts) and EM started
# from a gate too sharp to move. Smoothed by 0.1, measured against 0: the
# same or fewer EM iterations and the same or a higher log-likelihood on
# every case tried (a classifier on 1e5 rows, 20 features, 8 experts:
# -0.904 per row after 200 iterations against -0.273 after 64).
START_GATE_SMOOTHING = 0.1


def smoothed_gate_targets(resp):
    """The first gate fit's targets: ``resp`` moved toward uniform.

    Any array type (NumPy, an Array API array, a chunk's responsibilities).
    """
    K = resp.shape[1]
    return (1.0 - START_GATE_SMOOTHING) * resp + START_GATE_SMOOTHING / K


# k-means for the starting responsibilities runs on at most this many rows
# (an evenly strided subsample): Lloyd's iterations on all of 1e6 rows took
# 2-3 s, several EM iterations' worth, for a start EM then moves anyway.
_KMEANS_MAX_ROWS = 100_000
# KMeans's defaults: the most Lloyd iterations, and its tolerance on the
# centres' squared shift relative to the mean variance of the columns.
_KMEANS_MAX_ITER = 300
_KMEANS_TOL = 1e-4


def seed_unset_random_states(estimator, random_state):
    """Give every ``random_state=None`` inside ``estimator`` a drawn integer.

    Experts are refitted at each EM iteration; a fixed seed per expert keeps
    those refits, and the whole fit, reproducible for a given
    ``random_state``. Seeds the user set are left alone.
    """
    unset = {
        key: random_state.randint(np.iinfo(np.int32).max)
        for key, value in estimator.get_params(deep=True).items()
        if (key == "random_state" or key.endswith("__random_state")) and value is None
    }
    return estimator.set_params(**unset) if unset else estimator


def kmeans_space(X, T, sample_weight):
    """The standardised inputs and targets that k-means clusters, and their scaling.

    Returns ``(Z, scaling)`` with ``scaling`` as :func:`kmeans_scaling`
    gives it.
    """
    scaling = kmeans_scaling(X, T, sample_weight)
    return scale_for_kmeans(X, T, scaling), scaling


def kmeans_scaling(X, T, sample_weight):
    """``(x_mean, x_std, t_mean, t_std, t_scale)`` of the k-means space.

    The inputs and targets standardised by their weighted means and standard
    deviations; the targets weigh as much as all inputs together (``t_scale
    = sqrt(n_features / n_target_columns)``), so that clusters separate
    regions where y behaves differently, not just x. Above
    ``_KMEANS_MAX_ROWS`` rows the spreads are summed by chunks of rows: the
    whole ``(X - mean) ** 2`` temporary cost more than the k-means fit.
    """
    w = sample_weight / sample_weight.sum()

    def std(A, mean):
        if A.shape[0] <= _KMEANS_MAX_ROWS:
            out = np.sqrt(w @ (A - mean) ** 2)
        else:
            out = np.sqrt(
                sum(
                    w[i : i + _KMEANS_MAX_ROWS]
                    @ (A[i : i + _KMEANS_MAX_ROWS] - mean) ** 2
                    for i in range(0, A.shape[0], _KMEANS_MAX_ROWS)
                )
            )
        out[out == 0] = 1.0
        return out

    x_mean = w @ X
    x_std = std(X, x_mean)
    t_mean = w @ T if T.shape[1] else np.zeros(0)
    t_std = std(T, t_mean) if T.shape[1] else np.zeros(0)
    t_scale = np.sqrt(X.shape[1] / T.shape[1]) if T.shape[1] else 1.0
    return x_mean, x_std, t_mean, t_std, t_scale


def scale_for_kmeans(X, T, scaling):
    """``[X, T]`` in the space of :func:`kmeans_space`'s ``scaling``."""
    x_mean, x_std, t_mean, t_std, t_scale = scaling
    Z = (X - x_mean) / x_std
    if T.shape[1] == 0:
        return Z
    return np.hstack([Z, t_scale * (T - t_mean) / t_std])


def kmeans_labels(Z, sample_weight, n_clusters, random_state):
    """k-means clusters of Z, started from weighted quantiles of its first
    principal component (PCA-Part) rather than random k-means++ seeds.

    The start is deterministic and depends on the rows only through their
    weights, so integer weights give the same clusters as repeated rows;
    Lloyd's iterations keep that. Where a heavy row leaves a quantile bin
    empty, k-means++ seeding is used instead. Above ``_KMEANS_MAX_ROWS`` rows
    the centres are found on an evenly strided subsample and every row then
    goes to its nearest centre.
    """
    n = Z.shape[0]
    if n > _KMEANS_MAX_ROWS:
        rows = slice(None, None, -(-n // _KMEANS_MAX_ROWS))
        if sample_weight[rows].sum() > 0:
            centers = _kmeans_fit(
                Z[rows], sample_weight[rows], n_clusters, random_state
            )[0]
            return pairwise_distances_argmin(Z, centers)
    return _kmeans_fit(Z, sample_weight, n_clusters, random_state)[1]


def _kmeans_fit(Z, sample_weight, n_clusters, random_state):
    """The centres and labels of :func:`kmeans_labels` (all of Z's rows)."""
    W = sample_weight.sum()
    Zc = Z - sample_weight @ Z / W
    cov = (Zc * sample_weight[:, None]).T @ Zc / W
    direction = np.linalg.eigh(cov)[1][:, -1]
    # sign: the largest component positive, the first of those equal up to
    # round-off (for one input and one target, standardised, the direction is
    # (1, +-1) / sqrt(2): argmax alone would flip with the row order)
    size = np.abs(direction)
    lead = np.flatnonzero(size >= (1 - 1e-8) * size.max())[0]
    direction *= np.sign(direction[lead])
    proj = Zc @ direction
    order = np.argsort(proj, kind="stable")
    # equal projections (repeated rows) share a bin, as one weighted row would
    tie = np.cumsum(np.r_[True, np.diff(proj[order]) != 0]) - 1
    tie_weight = np.bincount(tie, weights=sample_weight[order])
    tie_mid = np.cumsum(tie_weight) - 0.5 * tie_weight
    bins = np.minimum((tie_mid / W * n_clusters).astype(int), n_clusters - 1)[tie]
    groups = np.empty(len(Z), dtype=int)
    groups[order] = bins
    mass = np.bincount(groups, weights=sample_weight, minlength=n_clusters)
    seed = random_state.randint(np.iinfo(np.int32).max)
    if np.all(mass > 0):
        centers = np.stack(
            [
                sample_weight[groups == k] @ Z[groups == k] / mass[k]
                for k in range(n_clusters)
            ]
        )
        # scikit-learn's Lloyd iterations from these centres, compiled (the
        # same labels up to rows equidistant from two centres; KMeans spent
        # 3-4 ms around them at 1e4 rows); a cluster left without weight
        # goes back to KMeans, which relocates it
        labels, fitted, _, ok = weighted_lloyd(
            Z,
            sample_weight,
            centers,
            max_iter=_KMEANS_MAX_ITER,
            tol=_KMEANS_TOL * float(np.mean(np.var(Z, axis=0))),
        )
        if ok:
            return fitted, labels
        kmeans = KMeans(
            n_clusters=n_clusters, init=centers, n_init=1, random_state=seed
        )
    else:
        kmeans = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
    kmeans.fit(Z, sample_weight=sample_weight)
    return kmeans.cluster_centers_, kmeans.labels_


def initial_responsibilities(
    X, T, sample_weight, n_experts, init, restart, random_state, tree=None
):
    """Starting responsibilities, shape (n_samples, n_experts).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    T : ndarray of shape (n_samples, n_target_columns)
        Target columns that k-means clusters with the inputs (none for a
        classifier: clusters split by label would make class-pure experts
        that a gate over x cannot tell apart).
    sample_weight : ndarray of shape (n_samples,)
    n_experts : int
    init : {"kmeans", "random"}
    restart : int
        Which restart this is: restarts after the first are random.
    random_state : RandomState
    tree : tuple of (branching, columns) or None
        For a hierarchical gate: its branching and the columns it sees
        (None: all). k-means clusters are then numbered so that sibling
        leaves get nearby clusters (:func:`tree_order`).
    """
    n, K = X.shape[0], n_experts
    if K == 1:
        return np.ones((n, 1))
    # k-means restarts land in much the same clusters; random
    # responsibilities explore other optima (on known-mixture data the
    # true optimum was found in 77 of 80 fits with n_init=5 this way, 72
    # with five k-means starts)
    # random responsibilities first (restart 1, as n_init=2 always had),
    # then every other restart from random rows. Not for a hierarchical gate:
    # on a two-level tree of 4 linear experts (1000 rows) random rows ended
    # at -518 and -814 where random responsibilities reached the truth (430)
    if restart > 0 and restart % 2 == 0 and tree is None:
        return subset_responsibilities(X, T, sample_weight, K, random_state)
    if init == "random" or restart > 0:
        return random_state.dirichlet(np.ones(K), size=n)
    scaling = kmeans_scaling(X, T, sample_weight)
    rows = slice(None, None, -(-n // _KMEANS_MAX_ROWS))
    if n > _KMEANS_MAX_ROWS and sample_weight[rows].sum() > 0:
        # the centres from an evenly strided subsample; every row then to its
        # nearest centre, by chunks of rows (the whole standardised data
        # would be a copy the size of X)
        Zs = scale_for_kmeans(X[rows], T[rows], scaling)
        centers = _kmeans_fit(Zs, sample_weight[rows], K, random_state)[0]
        labels = np.concatenate(
            [
                pairwise_distances_argmin(
                    scale_for_kmeans(
                        X[i : i + _KMEANS_MAX_ROWS],
                        T[i : i + _KMEANS_MAX_ROWS],
                        scaling,
                    ),
                    centers,
                )
                for i in range(0, n, _KMEANS_MAX_ROWS)
            ]
        )
        Zx = None
    else:
        Z = scale_for_kmeans(X, T, scaling)
        labels = kmeans_labels(Z, sample_weight, K, random_state)
        Zx = Z[:, : X.shape[1]]
    if tree is not None:
        if Zx is None:
            # the clusters' centres are linear in the rows: from X itself
            x_mean, x_std = scaling[:2]
            centres = (_cluster_centres(X, labels, sample_weight, K) - x_mean) / x_std
        else:
            centres = _cluster_centres(Zx, labels, sample_weight, K)
        labels = _tree_relabel(labels, centres, tree)
    return _one_hot(labels, K)


def _tree_relabel(labels, centres, tree):
    """Clusters renumbered so that sibling leaves get nearby clusters."""
    branching, columns = tree
    if columns is not None:
        centres = centres[:, columns]
    order = tree_order(centres, branching)
    leaf = np.empty(len(centres), dtype=np.intp)
    leaf[order] = np.arange(len(centres))
    return leaf[labels]


def _one_hot(labels, K):
    resp = np.zeros((labels.shape[0], K))
    resp[np.arange(labels.shape[0]), labels] = 1.0
    return resp


def subset_responsibilities(X, T, sample_weight, n_experts, random_state):
    """Hard responsibilities from experts each fitted on a few random rows.

    Random parameters, as flexmix and mixtools start: each expert is the
    least-squares fit of the standardised targets on the standardised inputs
    (and an intercept) over ``n_features + 2`` rows drawn at random (by
    weight), and each row goes to the expert that predicts its target best.
    Unlike random responsibilities, which put every expert near the fit of
    all the data, an expert can start on a thin regime of a few points (a
    line a third of tonedata's rows lie on). Without target columns (a
    classifier) each row goes to the nearest of ``n_experts`` random rows.
    """
    n, d = X.shape
    positive = np.flatnonzero(sample_weight > 0)
    p = sample_weight[positive] / sample_weight[positive].sum()
    x_mean, x_std, t_mean, t_std, _ = kmeans_scaling(X, T, sample_weight)
    dist = np.empty((n, n_experts))
    if T.shape[1] == 0:
        centres = random_state.choice(positive, n_experts, replace=False, p=p)
        for k, row in enumerate(centres):
            dist[:, k] = np.sum(((X - X[row]) / x_std) ** 2, axis=1)
    else:
        D = np.hstack([np.ones((n, 1)), (X - x_mean) / x_std])
        Zt = (T - t_mean) / t_std
        m = min(positive.size, d + 2)
        for k in range(n_experts):
            rows = random_state.choice(positive, m, replace=False, p=p)
            coef = np.linalg.lstsq(D[rows], Zt[rows], rcond=None)[0]
            dist[:, k] = np.sum((Zt - D @ coef) ** 2, axis=1)
    resp = np.zeros((n, n_experts))
    resp[np.arange(n), dist.argmin(axis=1)] = 1.0
    return resp


def _cluster_centres(Z, labels, sample_weight, K):
    """Each cluster's weighted mean row of Z, shape (K, n_columns)."""
    mass = np.bincount(labels, weights=sample_weight, minlength=K)
    return np.stack(
        [
            sample_weight[labels == k] @ Z[labels == k] / max(mass[k], 1e-300)
            for k in range(K)
        ]
    )


def dead_experts(n_eff, total):
    """Indices of the experts whose weight share has collapsed."""
    # relative to the total weight, so that weights and repeated rows agree
    return np.flatnonzero(n_eff < DEAD_EXPERT_FRACTION * total)


def warn_reseeded(dead, stacklevel=2):
    """The one warning every backend gives when it re-seeds experts."""
    warnings.warn(
        f"Expert(s) {list(map(int, dead))} collapsed (share of the total weight "
        f"below {DEAD_EXPERT_FRACTION:g}) and were re-seeded on the "
        "worst-explained rows.",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


def reseed_dead_experts(resp, row_ll, sample_weight):
    """Give collapsed experts the rows the mixture explains worst.

    An expert whose share of the total weight falls below
    ``DEAD_EXPERT_FRACTION`` can no longer be fitted meaningfully; it
    restarts on the worst-explained rows (of positive weight, as many as
    make up ``1 / (2 n_experts)`` of the total weight) instead of producing
    NaN. It shares those rows half and half with the experts that held them,
    so a re-seed never empties another expert. The log-likelihood may dip
    once after this. Returns the responsibilities (a changed copy, or
    ``resp`` itself when no expert collapsed) and the re-seeded experts.
    """
    K = resp.shape[1]
    total = sample_weight.sum()
    dead = dead_experts(sample_weight @ resp, total)
    if dead.size == 0 or dead.size == K:
        return resp, dead[:0]
    resp = resp.copy()
    order = np.argsort(row_ll, kind="stable")
    order = order[sample_weight[order] > 0]
    # block j holds the rows whose cumulative weight is in (j, j + 1] shares
    share = total / (2 * K)
    stops = np.searchsorted(
        np.cumsum(sample_weight[order]),
        share * np.arange(1, dead.size + 1),
        side="right",
    )
    start = 0
    for k, stop in zip(dead, stops, strict=True):
        rows = order[start : max(stop, start + 1)]
        resp[rows] *= 0.5
        resp[rows, k] += 0.5
        start = max(stop, start + 1)
    return resp, dead


def reseed_thresholds(row_ll, sample_weight, n_dead, n_experts):
    """Row log-likelihoods below which rows go to each of ``n_dead`` experts.

    The streamed counterpart of :func:`reseed_dead_experts`: dead expert
    ``j`` takes the rows whose log-likelihood lies in the ``j``-th block of
    ``1 / (2 n_experts)`` of the weight, counted from the worst, with the
    quantiles estimated on a subsample (``row_ll`` and ``sample_weight``).
    """
    order = np.argsort(row_ll, kind="stable")
    order = order[sample_weight[order] > 0]
    cum = np.cumsum(sample_weight[order]) / sample_weight.sum()
    shares = np.arange(1, n_dead + 1) / (2 * n_experts)
    at = np.minimum(np.searchsorted(cum, shares, side="left"), len(order) - 1)
    return row_ll[order[at]]
