"""scikit-learn's own estimator checks: defaults, tree experts, gradient training."""

from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

ESTIMATORS = [
    MixtureOfExpertsRegressor(random_state=0),
    MixtureOfExpertsClassifier(random_state=0),
    MixtureOfExpertsRegressor(
        DecisionTreeRegressor(max_depth=3), n_experts=2, random_state=0
    ),
    MixtureOfExpertsClassifier(
        DecisionTreeClassifier(max_depth=3), n_experts=2, random_state=0
    ),
    MixtureOfExpertsRegressor(training="gradient", random_state=0),
    MixtureOfExpertsClassifier(training="gradient", random_state=0),
    MixtureOfExpertsRegressor(
        gate="mlp", gate_hidden_layer_sizes=(4,), n_experts=2, random_state=0
    ),
    MixtureOfExpertsClassifier(
        gate="mlp", gate_hidden_layer_sizes=(4, 3), n_experts=2, random_state=0
    ),
    MixtureOfExpertsRegressor(gate="hierarchical", n_experts=4, random_state=0),
    MixtureOfExpertsClassifier(gate="hierarchical", n_experts=4, random_state=0),
    MixtureOfExpertsRegressor(training="cem", gate_load_balance=0.1, random_state=0),
    MixtureOfExpertsClassifier(training="sem", max_iter=30, random_state=0),
]

_SCORE_SAMPLES_NEEDS_Y = (
    "the check calls score_samples(X), but a mixture of experts is a "
    "conditional density and score_samples(X, y) = log p(y | x) needs y; "
    "tests/test_api.py checks predict, predict_proba and predict_gate "
    "for the same subset and order invariance"
)


def _expected_failed_checks(estimator):
    expected = {
        "check_methods_subset_invariance": _SCORE_SAMPLES_NEEDS_Y,
        "check_methods_sample_order_invariance": _SCORE_SAMPLES_NEEDS_Y,
    }
    if isinstance(estimator.estimator, DecisionTreeClassifier):
        expected["check_sample_weight_equivalence_on_dense_data"] = (
            "from the second EM step the experts get fractional weights, and "
            "DecisionTreeClassifier itself fitted on fractional weights differs "
            "from the same weights on repeated rows (6 of 20 random weightings "
            "of this check's data; it counts rows in min_samples_split/leaf); "
            "the first EM step, with integer weights, agrees to 1e-15"
        )
    if getattr(estimator, "training", "em") == "gradient" and not isinstance(
        estimator, MixtureOfExpertsClassifier
    ):
        expected["check_sample_weight_equivalence_on_dense_data"] = (
            "L-BFGS runs hundreds of iterations up a saturating gate, which "
            "amplifies the round-off of weighted sums against sums over repeated "
            "rows to ~1e-7 relative in the predictions, the check's tolerance; "
            "tests/test_gradient.py::test_integer_weights_equal_repeated_rows "
            "checks the equivalence to 1e-4"
        )
    if estimator.gate == "mlp" and isinstance(estimator, MixtureOfExpertsRegressor):
        expected["check_sample_weight_equivalence_on_dense_data"] = (
            "the MLP gate's fit is not convex and L-BFGS stops at a tolerance: "
            "weights instead of repeated rows change the rounding, and so where "
            "it stops; the regressor's predictions agree to about 1e-6, not the "
            "check's 1e-7 (the classifier's probabilities pass). "
            "tests/test_gates.py checks the gate's gradient and fits"
        )
    return expected


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
