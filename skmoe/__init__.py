"""skmoe: mixtures of experts for scikit-learn."""

from ._classification import MixtureOfExpertsClassifier
from ._gating import SoftmaxGate
from ._regression import MixtureOfExpertsRegressor

__version__ = "0.1.0"

__all__ = [
    "MixtureOfExpertsClassifier",
    "MixtureOfExpertsRegressor",
    "SoftmaxGate",
    "__version__",
]
