"""scikit-learn's own estimator checks, on the defaults and with tree experts."""

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
]

_SCORE_SAMPLES_NEEDS_Y = (
    "the check calls score_samples(X), but a mixture of experts is a "
    "conditional density and score_samples(X, y) = log p(y | x) needs y; "
    "tests/test_estimators.py checks predict, predict_proba and predict_gate "
    "for the same subset and order invariance"
)


def _expected_failed_checks(estimator):
    expected = {
        "check_methods_subset_invariance": _SCORE_SAMPLES_NEEDS_Y,
        "check_methods_sample_order_invariance": _SCORE_SAMPLES_NEEDS_Y,
    }
    if isinstance(estimator, MixtureOfExpertsRegressor) and estimator.estimator is None:
        expected["check_sample_weight_equivalence_on_dense_data"] = (
            "the check fits 15 rows with 30 features: every linear expert "
            "interpolates its rows, all noise variances sit at the floor and "
            "many fits share the same likelihood (the weighted and repeated fits "
            "agree on it), so which interpolant EM reaches depends on the "
            "k-means start, whose random draws differ between weighted and "
            "repeated rows; tests/test_estimators.py checks the equivalence on "
            "well-posed data"
        )
    return expected


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
