"""A scorer for held-out log-likelihood, for ``GridSearchCV(scoring=...)``."""

import numpy as np

from ._pipeline import mixture_inputs


def log_likelihood_scorer(estimator, X, y, sample_weight=None):
    """Mean conditional log-likelihood ``log p(y | x)`` of held-out rows.

    A scorer in scikit-learn's sense (greater is better): pass it as
    ``scoring=log_likelihood_scorer`` to ``GridSearchCV``, ``cross_val_score``
    or ``cross_validate`` to tune a mixture of experts by how well it
    predicts the whole distribution of the targets, not only their mean
    (which ``scoring="r2"`` or the default ``score`` measure).

    Parameters
    ----------
    estimator : fitted mixture of experts or Pipeline ending in one
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the rows in the mean.

    Returns
    -------
    score : float
        ``sum_i w_i log p(y_i | x_i) / sum_i w_i``.
    """
    mixture, X_mixture = mixture_inputs(estimator, X)
    log_density = mixture.conditional_log_likelihood(X_mixture, y)
    return float(np.average(log_density, weights=sample_weight))
