"""Input checks shared by every fitting path."""

import copy

import numpy as np
import pandas as pd
from sklearn.utils import get_tags
from sklearn.utils.validation import _check_sample_weight, validate_data

from ._sparse import is_sparse


def safe_limits(dtype=np.float64):
    """The largest magnitude and the smallest column spread a fit can hold.

    Values beyond the first would have squares that, summed over rows,
    overflow ``dtype`` in the Gram matrices, the variances and the gate's
    standardisation (10^-4 of the square root of the largest number: 1.3e150
    in float64). A column that varies by less than the second would have
    squares that underflow once scaled by the variance floor (10^-6) and
    averaged over a million rows: the standardisation and the noise
    variances would be 0 (10^7 times the square root of the smallest normal
    number: 1.5e-147 in float64).
    """
    dtype = np.dtype(dtype)
    finfo = np.finfo(dtype if dtype.kind == "f" else np.float64)
    return 1e-4 * np.sqrt(finfo.max), 1e7 * np.sqrt(finfo.tiny)


def check_no_categorical(X):
    """Refuse pandas categorical and date-time columns, which are not numbers.

    ``validate_data`` turns a categorical column into its category values:
    an obscure "could not convert string to float" for string categories,
    and a silent, meaningless number line for numeric ones; date-time columns
    reached NumPy's type promotion error.
    """
    if isinstance(X, pd.DataFrame):
        categorical = [
            str(name)
            for name, dtype in X.dtypes.items()
            if isinstance(dtype, pd.CategoricalDtype)
        ]
        if categorical:
            raise ValueError(
                f"X has categorical column(s) {categorical}; a mixture of "
                "experts needs numeric inputs. Encode them first, e.g. with "
                "OneHotEncoder in a Pipeline."
            )
        dates = [
            str(name)
            for name, dtype in X.dtypes.items()
            if pd.api.types.is_datetime64_any_dtype(dtype)
            or pd.api.types.is_timedelta64_dtype(dtype)
        ]
        if dates:
            raise ValueError(
                f"X has date or time column(s) {dates}; a mixture of experts "
                "needs numeric inputs. Turn them into numbers first (e.g. "
                "seconds since a date, or day-of-week columns)."
            )


def check_safe_range(A, name, *, spread=True):
    """Raise a ValueError naming the column whose values leave the safe range.

    Values whose squares overflow cannot be fitted or evaluated without inf
    or NaN; columns whose spread is so small that its square underflows
    (checked with ``spread``) would be constant to the fit. Either is
    refused with the column and the value, never fitted wrong; the limits
    are :func:`safe_limits` of the array's dtype.
    """
    if is_sparse(A):
        if A.shape[0] == 0 or A.shape[1] == 0:
            return
        # the implicit zeros count: a column's range always holds 0
        low = np.asarray(A.min(axis=0).toarray()).ravel()
        high = np.asarray(A.max(axis=0).toarray()).ravel()
        check_extremes(low, high, name, spread=spread, dtype=A.dtype)
        return
    A = np.asarray(A)
    if A.size == 0:
        return
    A = A.reshape(A.shape[0], -1)
    check_extremes(
        np.min(A, axis=0), np.max(A, axis=0), name, spread=spread, dtype=A.dtype
    )


def check_extremes(low, high, name, *, spread=True, dtype=np.float64):
    """:func:`check_safe_range` from each column's smallest and largest value."""
    largest, smallest_spread = safe_limits(dtype)
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    top = np.maximum(np.abs(low), np.abs(high))
    beyond = np.flatnonzero(top > largest)
    if beyond.size:
        j = int(beyond[0])
        raise ValueError(
            f"{name} column {j} holds a value of {top[j]:.3g}, beyond "
            f"{largest:.3g}: its square overflows {np.dtype(dtype).name}. "
            "Rescale it (e.g. with StandardScaler, or by a power of ten)."
        )
    if not spread:
        return
    width = high - low
    tiny = np.flatnonzero((width > 0) & (width < smallest_spread))
    if tiny.size:
        j = int(tiny[0])
        raise ValueError(
            f"{name} column {j} varies by only {width[j]:.3g}: below "
            f"{smallest_spread:.3g} its squares underflow "
            f"{np.dtype(dtype).name}. Rescale it (e.g. with StandardScaler, "
            "or by a power of ten)."
        )


def check_sparse_input(X, estimator, path, names, templates):
    """Raise a TypeError naming why sparse ``X`` cannot be fitted so.

    Sparse X is fitted by EM in memory (soft, classification or stochastic)
    with the linear softmax gate and experts that take sparse input; the
    other paths read dense rows.
    """
    if not is_sparse(X):
        return
    advice = "Densify X (X.toarray()) if it fits in memory, or "
    if path != "memory":
        raise TypeError(
            f"Sparse X is fitted on the CPU, in memory; device={estimator.device!r} "
            f"runs on the {path} path, which needs dense X. {advice}use device='cpu'."
        )
    if estimator.training == "gradient":
        raise TypeError(
            "Sparse X is fitted by EM; training='gradient' needs dense X. "
            f"{advice}use training='em'."
        )
    if estimator.gate != "linear" or estimator.gate_load_balance > 0:
        raise TypeError(
            f"Sparse X needs the linear gate without a load-balancing penalty; "
            f"gate={estimator.gate!r} with gate_load_balance="
            f"{estimator.gate_load_balance} reads dense rows. {advice}use "
            "gate='linear' and gate_load_balance=0."
        )
    for name, template in zip(names, templates, strict=True):
        if not get_tags(template).input_tags.sparse:
            raise TypeError(
                f"Expert {name!r} ({type(template).__name__}) does not take "
                f"sparse X. {advice}use experts that do (LinearRegression, Ridge, "
                "LogisticRegression, decision trees)."
            )


def validate_fit_data(
    estimator, X, y, sample_weight, *, reset, dtype=np.float64, accept_sparse=False
):
    """Validated ``(X, y, sample_weight)`` and the attributes validation sets.

    scikit-learn's ``validate_data`` runs on a copy of ``estimator``, so that
    a fit that fails later leaves the estimator as it was: the feature count
    and names it records come back in ``attributes`` (None: no names), for
    the fit to set once it has succeeded.
    """
    shell = copy.copy(estimator)
    check_no_categorical(X)
    is_classifier = estimator._is_classifier_moe
    X, y = validate_data(
        shell,
        X,
        y,
        reset=reset,
        dtype=dtype,
        accept_sparse=accept_sparse,
        multi_output=not is_classifier,
        y_numeric=not is_classifier,
    )
    check_safe_range(X, "X")
    if not is_classifier:
        # strings are not numbers: NumPy's "could not convert" names the value
        y = np.asarray(y, dtype=np.float64)
        check_safe_range(y, "y")
    sample_weight = _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True
    )
    if sample_weight.sum() <= 0:
        raise ValueError("sample_weight sums to zero; nothing to fit.")
    attributes = {
        "n_features_in_": shell.n_features_in_,
        "feature_names_in_": getattr(shell, "feature_names_in_", None),
    }
    return X, y, sample_weight, attributes
