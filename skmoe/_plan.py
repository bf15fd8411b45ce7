"""Which path a fit takes, and one table of what each path supports.

A fit runs in memory (NumPy and numba: any expert, gate and training), on
the Array API path (CuPy on a GPU, or array-api-strict), or streamed over
the chunks of Dask arrays; gradient training and ``partial_fit`` are further
paths over data in memory. Each path supports some trainings, estimators,
families (the regressor's ``family``), experts and gates;
:func:`check_supported` checks a configuration against
the table and raises one kind of error, in one style, naming what is not
supported, what is, and what to do instead.
"""

from dataclasses import dataclass
from inspect import signature

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from ._backends._dask import is_dask_collection
from ._backends._namespace import use_array_api
from ._em._logistic import logistic_settings
from ._em._stats import fast_linear_alpha


def select_path(estimator, X, y):
    """``"dask"``, ``"array_api"`` or ``"memory"``: where ``fit`` runs."""
    if is_dask_collection(X) or is_dask_collection(y):
        return "dask"
    if use_array_api(estimator.device, X):
        return "array_api"
    return "memory"


# -- what an expert is, for the paths that own its parameters


def gradient_penalty(expert, is_classifier):
    """The L2 weight gradient training gives ``expert``, or None if it cannot.

    Ridge's ``alpha`` (0 for LinearRegression) or, for LogisticRegression,
    ``1 / C`` (0 without a penalty).
    """
    if is_classifier and type(expert) is LogisticRegression:
        no_penalty = expert.penalty is None or expert.C == np.inf
        l2 = expert.penalty in ("deprecated", "l2") and expert.l1_ratio in (0, None)
        if expert.class_weight is None and (no_penalty or l2):
            return 0.0 if no_penalty else 1.0 / expert.C
        return None
    if not is_classifier and type(expert) in (LinearRegression, Ridge):
        if expert.positive or not np.isscalar(getattr(expert, "alpha", 0.0)):
            return None
        return float(getattr(expert, "alpha", 0.0))
    return None


ONLINE_LINEAR, ONLINE_LOGISTIC, ONLINE_PARTIAL_FIT = "linear", "logistic", "partial_fit"


def online_kind(expert, is_classifier):
    """How ``partial_fit`` updates ``expert``, or None when it cannot."""
    if not is_classifier and not getattr(expert, "positive", False):
        if type(expert) is LinearRegression or (
            type(expert) is Ridge and np.isscalar(expert.alpha)
        ):
            return ONLINE_LINEAR
    if is_classifier and type(expert) is LogisticRegression:
        l2 = expert.penalty in ("deprecated", "l2", None) and expert.l1_ratio in (
            0,
            None,
        )
        if l2 and expert.class_weight is None and expert.fit_intercept:
            return ONLINE_LOGISTIC
    partial_fit = getattr(expert, "partial_fit", None)
    if partial_fit is not None and "sample_weight" in signature(partial_fit).parameters:
        return ONLINE_PARTIAL_FIT
    return None


def _closed_form(expert, is_classifier):
    return None if is_classifier else fast_linear_alpha(expert)


def _streamed(expert, is_classifier):
    """What the streamed fit needs of ``expert``: a ridge penalty (linear
    experts, closed form) or Newton settings (LogisticRegression without
    class weights, whose balancing would need the pass it is used in)."""
    if not is_classifier:
        return fast_linear_alpha(expert)
    settings = logistic_settings(expert)
    if settings is None or settings.class_weight is not None:
        return None
    return settings


# -- the table


@dataclass(frozen=True)
class Path:
    """What a fitting path supports."""

    title: str  # the path, as the start of a sentence
    verb: str  # what it cannot do to an expert: "fit", "update", ...
    trainings: frozenset
    classifier: bool  # whether it fits MixtureOfExpertsClassifier
    # the regressor's families: the linear-Gaussian statistics of the other
    # paths (Gram matrices, noise variances, the Gaussian's gradient) hold
    # no other family's M-step
    families: frozenset
    experts: object  # expert_info(expert, is_classifier) -> info or None
    experts_text: str
    any_gate: bool  # else only gate='linear' without columns or penalty
    remedy: str
    # the sparse routings in training it takes: routing(estimator) gives
    # None where it takes the estimator's, else what it takes (None: none)
    routing: object = None


_LINEAR_GATE = "gate='linear' without gate_features or gate_load_balance"
_GAUSSIAN = frozenset({"gaussian"})

PATHS = {
    "memory": Path(
        title="EM in memory",
        verb="fit",
        trainings=frozenset({"em", "cem", "sem", "gradient"}),
        classifier=True,
        families=frozenset({"gaussian", "poisson", "gamma"}),
        experts=lambda expert, is_classifier: True,
        experts_text="any expert that accepts sample_weight",
        any_gate=True,
        remedy="",
        routing=lambda estimator: None,
    ),
    "array_api": Path(
        title=("The Array API path (device='cuda', CuPy or other Array API inputs)"),
        verb="fit",
        trainings=frozenset({"em"}),
        classifier=False,
        families=_GAUSSIAN,
        experts=_closed_form,
        experts_text=(
            "MixtureOfExpertsRegressor with linear experts (LinearRegression, "
            "Ridge with a direct solver)"
        ),
        any_gate=False,
        remedy=(
            "Fit with device='cpu' on NumPy inputs (for CuPy arrays, X.get()) instead."
        ),
    ),
    "dask": Path(
        title="EM over Dask arrays (out of core)",
        verb="fit",
        trainings=frozenset({"em"}),
        classifier=True,
        families=_GAUSSIAN,
        experts=_streamed,
        experts_text=(
            "LinearRegression or Ridge experts (solver 'auto' or 'cholesky', "
            "positive=False) for regression, LogisticRegression experts (L2 or "
            "no penalty, no class_weight, any solver but liblinear) for "
            "classification, fitted from summed per-chunk statistics"
        ),
        any_gate=False,
        remedy="Compute the arrays (X.compute()) to fit in memory.",
        routing=lambda estimator: (
            None
            if not estimator._is_classifier_moe
            and estimator.routing == "top_k"
            and estimator.routing_k >= 2
            else "routing='top_k' with routing_k >= 2 for MixtureOfExpertsRegressor"
        ),
    ),
    "gradient": Path(
        title="training='gradient'",
        verb="differentiate",
        trainings=frozenset({"gradient"}),
        classifier=True,
        families=_GAUSSIAN,
        experts=gradient_penalty,
        experts_text=(
            "experts whose parameters skmoe owns: LinearRegression or Ridge "
            "(scalar alpha, positive=False) for regression, LogisticRegression "
            "(L2 or no penalty, no class_weight) for classification"
        ),
        any_gate=False,
        remedy="Use training='em' for other experts, gates and families.",
    ),
    "online": Path(
        title="partial_fit",
        verb="update",
        trainings=frozenset({"em", "cem", "sem", "gradient"}),
        classifier=True,
        families=_GAUSSIAN,
        experts=online_kind,
        experts_text=(
            "experts whose own partial_fit takes sample_weight (e.g. "
            "SGDRegressor, SGDClassifier(loss='log_loss'), GaussianNB) or "
            "experts skmoe updates itself: LinearRegression or Ridge, "
            "LogisticRegression (L2 or no penalty, with intercept, no "
            "class_weight)"
        ),
        any_gate=False,
        remedy="Use fit for other experts, gates and families.",
    ),
}


def _refuse(path, what):
    supports = path.experts_text
    if path.families != PATHS["memory"].families:
        supports += ", " + " or ".join(f"family={f!r}" for f in sorted(path.families))
    if not path.any_gate:
        supports += f", {_LINEAR_GATE}"
    if path.trainings != PATHS["memory"].trainings:
        supports += ", " + " or ".join(
            f"training={t!r}" for t in sorted(path.trainings)
        )
    message = f"{path.title} cannot {path.verb} {what}: it supports {supports}."
    if path.remedy:
        message += " " + path.remedy
    return ValueError(message)


def check_supported(path_name, estimator, names, templates):
    """Raise unless ``path_name`` supports the configuration; per-expert info.

    Returns what the path's expert rule gives each expert (ridge penalties,
    gradient penalties, update kinds), in order.
    """
    path = PATHS[path_name]
    is_classifier = estimator._is_classifier_moe
    routing = getattr(estimator, "routing", "softmax")
    takes = None if path.routing is None else path.routing(estimator)
    if routing != "softmax" and (path.routing is None or takes is not None):
        supports = "routing='softmax'" + ("" if takes is None else f" or {takes}")
        raise ValueError(
            f"{path.title} cannot route rows sparsely in training "
            f"(routing={routing!r}, routing_k={estimator.routing_k}): it "
            f"supports {supports}. Fit arrays in memory with training='em', "
            "'cem' or 'sem' to route them otherwise."
        )
    if is_classifier and not path.classifier:
        raise _refuse(path, type(estimator).__name__)
    if estimator.training not in path.trainings:
        raise _refuse(path, f"training={estimator.training!r}")
    # the classifier has no family: its likelihood is the experts' own
    family = getattr(estimator, "family", "gaussian")
    if not is_classifier and family not in path.families:
        raise _refuse(path, f"family={family!r}")
    if not path.any_gate and (
        estimator.gate != "linear"
        or estimator.gate_features is not None
        or float(estimator.gate_load_balance) > 0
    ):
        raise _refuse(
            path,
            f"gate={estimator.gate!r} with gate_features="
            f"{estimator.gate_features!r} and gate_load_balance="
            f"{estimator.gate_load_balance!r}",
        )
    info = []
    for name, template in zip(names, templates, strict=True):
        value = path.experts(template, is_classifier)
        if value is None:
            raise _refuse(path, f"expert {name!r} ({type(template).__name__})")
        info.append(value)
    return info
