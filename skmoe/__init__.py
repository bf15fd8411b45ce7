"""skmoe: mixtures of experts for scikit-learn."""

from ._classification import MixtureOfExpertsClassifier
from ._compare import compare
from ._gates._hierarchical import HierarchicalGate
from ._gates._mlp import SoftmaxMLPGate
from ._gates._softmax import SoftmaxGate
from ._regression import MixtureOfExpertsRegressor
from ._scoring import log_likelihood_scorer
from ._selection import expert_n_parameters, select_n_experts

__version__ = "0.1.0"

__all__ = [
    "MixtureOfExpertsClassifier",
    "MixtureOfExpertsRegressor",
    "HierarchicalGate",
    "SoftmaxGate",
    "SoftmaxMLPGate",
    "compare",
    "expert_n_parameters",
    "log_likelihood_scorer",
    "select_n_experts",
    "__version__",
]
