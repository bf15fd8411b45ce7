"""MixtureOfExpertsClassifier on data from a known mixture."""

import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from skmoe import MixtureOfExpertsClassifier
from skmoe.datasets import make_moe_classification


@pytest.fixture(scope="module")
def mixture_data():
    return make_moe_classification(
        n_samples=3000,
        n_features=2,
        n_experts=2,
        n_classes=3,
        return_params=True,
        random_state=0,
    )


def test_recovers_true_log_likelihood(mixture_data):
    X, y, params = mixture_data
    clf = MixtureOfExpertsClassifier(
        LogisticRegression(C=1e4, max_iter=1000), n_experts=2, n_init=3, random_state=0
    ).fit(X, y)
    n_params = 2 * 3 * 3 + 3  # experts' coefs and intercepts, gate
    assert params.log_likelihood - 2.0 <= clf.log_likelihood_
    assert clf.log_likelihood_ <= params.log_likelihood + 2 * n_params
    # and the gate splits the inputs as the true one does, up to relabelling
    true_side = X @ params.gate_coef[:, 1] > 0
    fitted_side = clf.predict_gate(X)[:, 1] > 0.5
    agreement = np.mean(true_side == fitted_side)
    assert max(agreement, 1 - agreement) > 0.95


def test_predict_proba_is_the_gated_mixture(mixture_data):
    X, y, _ = mixture_data
    clf = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    gate = clf.predict_gate(X)
    experts = np.stack([e.predict_proba(X) for e in clf.experts_], axis=1)
    np.testing.assert_allclose(proba, np.einsum("nk,nkc->nc", gate, experts))
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    # the likelihood of the labels under predict_proba is the fitted one
    ll = np.log(proba[np.arange(len(y)), y]).sum()
    assert ll == pytest.approx(clf.log_likelihood_, rel=1e-9)
    np.testing.assert_allclose(
        clf.conditional_log_likelihood(X, y), np.log(proba[np.arange(len(y)), y])
    )
    single = LogisticRegression().fit(X, y)
    assert clf.score(X, y) > single.score(X, y) + 0.05


def test_string_labels_and_experts_missing_a_class():
    # left of 0 only "a"/"b", right of 0 only "c": a tree expert that owns the
    # right region sees one class, and its probabilities still line up
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(600, 1))
    y = np.where(X[:, 0] > 0, "c", np.where(X[:, 0] < -0.5, "a", "b"))
    clf = MixtureOfExpertsClassifier(
        DecisionTreeClassifier(max_depth=2), n_experts=2, random_state=0
    ).fit(X, y)
    assert list(clf.classes_) == ["a", "b", "c"]
    proba = clf.predict_proba(X)
    assert proba.shape == (600, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.score(X, y) > 0.97
    assert set(np.unique(clf.predict_expert(X))) <= {"a", "b", "c"}
    # an expert that knows only code 2 ("c") puts its mass in column "c"
    clf.experts_[1] = DummyClassifier().fit(X[:5], np.full(5, 2))
    gate = clf.predict_gate(X)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    expected_c = gate[:, 0] * clf.experts_[0].predict_proba(X)[:, 2] + gate[:, 1]
    np.testing.assert_allclose(proba[:, 2], expected_c)


def test_svc_experts_with_probability():
    X, y = make_moe_classification(n_samples=300, random_state=1)
    clf = MixtureOfExpertsClassifier(
        SVC(probability=True, random_state=0), n_experts=2, max_iter=10, random_state=0
    )
    with pytest.warns(Warning):  # 10 iterations may not converge
        clf.fit(X, y)
    single = LogisticRegression().fit(X, y)
    assert clf.score(X, y) > single.score(X, y)


def test_em_log_likelihood_never_decreases_with_unpenalised_experts():
    X, y = make_moe_classification(n_samples=800, random_state=1)
    clf = MixtureOfExpertsClassifier(
        LogisticRegression(C=1e6, tol=1e-10, max_iter=2000),
        n_experts=2,
        gate_alpha=0.0,
        max_iter=25,
        tol=0,
        # a random start: from k-means cells of X an unpenalised gate
        # separates the cells exactly and EM starts at its fixed point
        init="random",
        random_state=0,
    )
    with pytest.warns(Warning):
        clf.fit(X, y)
    curve = clf.log_likelihood_curve_
    # the experts' Newton steps never increase their objectives: the
    # log-likelihood never decreases, to round-off
    assert np.all(np.diff(curve) >= -1e-10 * np.abs(curve[1:]))
    assert curve[-1] > curve[0] + 10


def test_single_class_and_unseen_label_errors():
    X = np.random.RandomState(0).standard_normal((20, 2))
    with pytest.raises(ValueError, match="only one class"):
        MixtureOfExpertsClassifier().fit(X, np.zeros(20))
    clf = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(
        X, np.arange(20) % 2
    )
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.conditional_log_likelihood(X, np.full(20, 7))


def test_the_first_gate_fit_converges_on_separable_kmeans_cells():
    # k-means cells of X are linearly separable: on their 0/1
    # responsibilities the gate's first fit chased infinite weights (a
    # smallest gate probability of 7e-119 here, EM stuck); on the smoothed
    # targets it leaves every row some responsibility for every expert
    X, y = make_moe_classification(
        n_samples=3000, n_features=20, n_experts=8, n_classes=3, random_state=0
    )
    est = MixtureOfExpertsClassifier(n_experts=8, random_state=0, max_iter=1)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert est.gate_.n_iter_ < est.gate_.max_iter
    assert est.predict_gate(X).min() > 1e-10


def test_smoothed_gate_targets_keep_rows_summing_to_one():
    from skmoe._em._start import START_GATE_SMOOTHING, smoothed_gate_targets

    resp = np.eye(4)[np.arange(10) % 4]
    smooth = smoothed_gate_targets(resp)
    np.testing.assert_allclose(smooth.sum(axis=1), 1.0)
    assert smooth.min() == pytest.approx(START_GATE_SMOOTHING / 4)
    assert smooth.max() == pytest.approx(1 - START_GATE_SMOOTHING * 3 / 4)


def test_an_expert_overflowing_at_a_row_it_never_saw_does_not_stop_the_fit():
    # tiny inputs and one huge outlier: a GaussianNB expert fitted without
    # the outlier's row (zero weight) overflows there (its variances are
    # tiny); that row's probability under it counts as none, and the fit
    # ends finite (pytest makes the overflow's RuntimeWarning an error)
    from sklearn.naive_bayes import GaussianNB

    X0, y = make_moe_classification(n_samples=90, n_features=2, random_state=1)
    X = 1e-124 * X0
    X[0, 0] = -1e30
    est = MixtureOfExpertsClassifier(
        n_experts=2, estimator=GaussianNB(), max_iter=15, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert np.isfinite(est.log_likelihood_)
    assert np.all(np.isfinite(est.predict_proba(X[1:])))
