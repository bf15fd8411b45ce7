"""Input checks shared by every fitting path."""

import copy

import numpy as np
import pandas as pd
from sklearn.utils.validation import _check_sample_weight, validate_data


def check_no_categorical(X):
    """Refuse pandas categorical columns, which would be read as numbers.

    ``validate_data`` turns a categorical column into its category values:
    an obscure "could not convert string to float" for string categories,
    and a silent, meaningless number line for numeric ones.
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


def validate_fit_data(estimator, X, y, sample_weight, *, reset, dtype=np.float64):
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
        multi_output=not is_classifier,
        y_numeric=not is_classifier,
    )
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
