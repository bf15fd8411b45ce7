"""A mixture of experts inside a Pipeline: find it, and what it sees of X.

Model selection, the scorer and the displays take either a mixture of
experts or a :class:`~sklearn.pipeline.Pipeline` whose last step is one, as
scikit-learn's own displays take pipelines.
"""

from sklearn.pipeline import Pipeline


def _is_mixture(estimator):
    # the fitted attributes and methods every mixture has (a duck test, so
    # that this module needs no import of the estimators)
    return hasattr(type(estimator), "conditional_log_likelihood") and hasattr(
        type(estimator), "predict_gate"
    )


def mixture_step(estimator):
    """The mixture of experts of ``estimator`` and its parameter prefix.

    Parameters
    ----------
    estimator : mixture of experts or Pipeline ending in one

    Returns
    -------
    mixture : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        ``estimator`` itself, or the Pipeline's last step.
    prefix : str
        What names the mixture's parameters in ``estimator.set_params``:
        ``""`` or ``"<last step's name>__"``.
    """
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        if _is_mixture(last):
            return last, f"{name}__"
        raise TypeError(
            "The Pipeline's last step must be a MixtureOfExpertsRegressor or "
            f"MixtureOfExpertsClassifier, got {type(last).__name__}."
        )
    if _is_mixture(estimator):
        return estimator, ""
    raise TypeError(
        "Expected a MixtureOfExpertsRegressor, a MixtureOfExpertsClassifier or "
        f"a Pipeline ending in one, got {type(estimator).__name__}."
    )


def mixture_inputs(estimator, X):
    """The fitted mixture of ``estimator``, and ``X`` as that mixture sees it.

    Parameters
    ----------
    estimator : fitted mixture of experts or Pipeline ending in one
    X : array-like of shape (n_samples, n_features)
        Inputs of ``estimator`` (of the Pipeline's first step).

    Returns
    -------
    mixture : fitted mixture of experts
    X_mixture : array-like
        ``X`` through the Pipeline's steps before the mixture (``X`` itself
        for a bare mixture).
    """
    mixture, prefix = mixture_step(estimator)
    if prefix:
        X = estimator[:-1].transform(X)
    return mixture, X
