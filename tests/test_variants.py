"""EM variants: soft EM, classification EM (CEM) and stochastic EM (SEM)."""

import numpy as np
import pytest

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression

# CEM and SEM reach the soft-EM log-likelihood within this many nats per row
# on well-separated known-mixture data (CEM's hard assignments bias
# overlapping experts apart; SEM keeps a drawn, not the exact, optimum).
_PER_ROW_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def mixture():
    return make_moe_regression(
        n_samples=800, n_features=2, n_experts=3, return_params=True, random_state=0
    )


@pytest.fixture(scope="module")
def soft_em(mixture):
    X, y, _ = mixture
    return MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(X, y)


@pytest.mark.parametrize("training", ["cem", "sem"])
def test_variant_reaches_the_soft_em_log_likelihood(mixture, soft_em, training):
    X, y, params = mixture
    moe = MixtureOfExpertsRegressor(n_experts=3, training=training, random_state=0).fit(
        X, y
    )
    n = len(X)
    assert soft_em.log_likelihood_ > params.log_likelihood
    gap = (soft_em.log_likelihood_ - moe.log_likelihood_) / n
    assert abs(gap) < _PER_ROW_TOLERANCE
    # and it is the log-likelihood of the parameters kept
    np.testing.assert_allclose(
        moe.log_likelihood_, moe.conditional_log_likelihood(X, y).sum(), rtol=1e-10
    )


def test_soft_em_objective_is_the_penalised_log_likelihood(mixture, soft_em):
    X, y, _ = mixture
    curve, objective = soft_em.log_likelihood_curve_, soft_em.objective_curve_
    assert curve.shape == objective.shape == (soft_em.n_iter_,)
    np.testing.assert_allclose(
        objective[-1], soft_em.log_likelihood_ - soft_em.gate_.penalty()
    )
    assert np.all(np.diff(objective) >= -1e-9 * abs(objective[-1]))


def test_cem_classification_likelihood_is_monotone(mixture):
    X, y, _ = mixture
    moe = MixtureOfExpertsRegressor(
        n_experts=3, training="cem", init="random", random_state=2
    ).fit(X, y)
    objective = moe.objective_curve_
    assert moe.n_iter_ > 3  # a start far enough away to climb
    assert np.all(np.diff(objective) >= -1e-9 * abs(objective[-1]))
    # it is sum_i max_k log(g_k p_k) minus the gate penalty, at the end
    log_joint = moe.conditional_log_likelihood(X, y) + np.log(
        moe.responsibilities(X, y).max(1)
    )
    np.testing.assert_allclose(
        objective[-1], log_joint.sum() - moe.gate_.penalty(), rtol=1e-8
    )
    # below the mixture log-likelihood, which sums over the experts
    assert objective[-1] < moe.log_likelihood_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cem_stops_when_assignments_settle(mixture):
    X, y, _ = mixture
    moe = MixtureOfExpertsRegressor(n_experts=3, training="cem", random_state=0)
    moe.fit(X, y)
    assert moe.converged_
    labels = moe.responsibilities(X, y).argmax(axis=1)
    again = moe.set_params(warm_start=True, max_iter=1).fit(X, y)
    np.testing.assert_array_equal(again.responsibilities(X, y).argmax(1), labels)


def test_sem_keeps_its_best_iteration(mixture):
    X, y, _ = mixture
    moe = MixtureOfExpertsRegressor(
        n_experts=3, training="sem", max_iter=60, random_state=0
    ).fit(X, y)
    curve, objective = moe.log_likelihood_curve_, moe.objective_curve_
    # the draws keep the log-likelihood moving: not monotone
    assert np.any(np.diff(curve) < 0)
    # the kept parameters are those of the best penalised iteration
    np.testing.assert_allclose(
        moe.log_likelihood_ - moe.gate_.penalty(), objective.max(), rtol=1e-10
    )


def test_sem_stops_on_a_window_without_gain(mixture):
    X, y, _ = mixture
    moe = MixtureOfExpertsRegressor(
        n_experts=3, training="sem", max_iter=500, tol=1e-2, random_state=0
    ).fit(X, y)
    assert moe.converged_
    # stopped 20 iterations after the last gain of more than tol per row
    best = np.maximum.accumulate(moe.objective_curve_ / len(X))
    gains = np.flatnonzero(np.diff(np.r_[-np.inf, best]) > 1e-2)
    assert moe.n_iter_ == gains[-1] + 1 + 20


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sem_is_reproducible_from_random_state(mixture):
    X, y, _ = mixture

    def curve(seed):
        moe = MixtureOfExpertsRegressor(
            n_experts=3, training="sem", max_iter=15, random_state=seed
        )
        return moe.fit(X, y).log_likelihood_curve_

    np.testing.assert_array_equal(curve(3), curve(3))
    assert not np.array_equal(curve(3), curve(4))


@pytest.mark.parametrize("training", ["cem", "sem"])
def test_classifier_variants_reach_soft_em(training):
    X, y = make_moe_classification(n_samples=600, random_state=0)
    soft = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(X, y)
    moe = MixtureOfExpertsClassifier(
        n_experts=2, training=training, random_state=0
    ).fit(X, y)
    # class labels carry less information per row: a looser, stated bound
    assert abs(soft.log_likelihood_ - moe.log_likelihood_) / len(X) < 0.03
    assert moe.score(X, y) > soft.score(X, y) - 0.03


def test_unknown_training_is_refused(mixture):
    X, y, _ = mixture
    with pytest.raises(ValueError, match="training"):
        MixtureOfExpertsRegressor(training="hard").fit(X, y)
