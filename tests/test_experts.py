"""The experts' M-step: closed-form linear experts, weights, class alignment."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor

from skmoe._experts import check_experts, fit_experts, sample_weight_key


@pytest.mark.parametrize(
    "template",
    [
        LinearRegression(),
        LinearRegression(fit_intercept=False),
        Ridge(alpha=3.0),
        Ridge(alpha=0.5, fit_intercept=False),
    ],
    ids=repr,
)
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_closed_form_equals_sklearn_fit(template, n_outputs):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((200, 4)) + 5.0  # off-centre, to exercise the shift
    Y = X @ rng.standard_normal((4, n_outputs)) + rng.standard_normal((200, n_outputs))
    weights = rng.uniform(0, 1, size=(200, 2))
    weights[:20, 0] = 0.0
    y_is_1d = n_outputs == 1
    experts = fit_experts(
        [template, template], X, Y, weights, is_classifier=False, y_is_1d=y_is_1d
    )
    for k, est in enumerate(experts):
        assert type(est) is type(template)
        ref = type(template)(**template.get_params()).fit(
            X, Y[:, 0] if y_is_1d else Y, sample_weight=weights[:, k]
        )
        np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(est.predict(X), ref.predict(X), rtol=1e-8)


def test_fit_experts_returns_the_weights_sums_from_the_gram_matrices():
    # the gate's M-step starts from these sums: they must be the weights'
    # own, about the centre given back, and None where an expert is fitted
    # by its own fit (no Gram matrix for it)
    rng = np.random.RandomState(3)
    X = rng.standard_normal((300, 3)) + [0.0, 100.0, -5.0]
    Y = rng.standard_normal((300, 1))
    weights = rng.uniform(size=(300, 3))
    experts, ((centre, totals, centred), variances) = fit_experts(
        [LinearRegression(), Ridge(), LinearRegression()],
        X,
        Y,
        weights,
        is_classifier=False,
        y_is_1d=True,
        return_stats=True,
    )
    assert len(experts) == 3
    np.testing.assert_allclose(totals, weights.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(centred, weights.T @ (X - centre), rtol=1e-10, atol=1e-9)
    # and each expert's weighted mean squared residual, from its Gram matrix
    for k, est in enumerate(experts):
        residual = Y[:, 0] - est.predict(X)
        expected = weights[:, k] @ residual**2 / weights[:, k].sum()
        np.testing.assert_allclose(variances[k], [expected], rtol=1e-10)
    _, none = fit_experts(
        [LinearRegression(), DecisionTreeRegressor(max_depth=2), Ridge()],
        X,
        Y,
        weights,
        is_classifier=False,
        y_is_1d=True,
        return_stats=True,
    )
    assert none is None


def test_closed_form_rank_deficient_gives_least_squares_fit():
    rng = np.random.RandomState(1)
    x = rng.standard_normal((50, 1))
    X = np.hstack([x, 2 * x])  # collinear columns
    y = 3 * x[:, 0] + 1
    (est,) = fit_experts(
        [LinearRegression()],
        X,
        y[:, None],
        np.ones((50, 1)),
        is_classifier=False,
        y_is_1d=True,
    )
    np.testing.assert_allclose(est.predict(X), y, atol=1e-6)
    # minimum-norm solution, as LinearRegression's lstsq gives
    np.testing.assert_allclose(est.coef_, LinearRegression().fit(X, y).coef_, atol=1e-6)


def test_generic_expert_gets_weights_and_zero_weight_rows_are_dropped():
    seen = {}

    class Recorder(RegressorMixin, BaseEstimator):
        def fit(self, X, y, sample_weight=None):
            seen["n"], seen["w"] = len(X), sample_weight
            self.mean_ = np.average(y, weights=sample_weight)
            return self

        def predict(self, X):
            return np.full(len(X), self.mean_)

    X = np.arange(10.0)[:, None]
    weights = np.linspace(0, 1, 10)[:, None]
    (est,) = fit_experts(
        [Recorder()], X, X.copy(), weights, is_classifier=False, y_is_1d=True
    )
    assert seen["n"] == 9
    np.testing.assert_allclose(seen["w"], weights[1:, 0])
    assert est.mean_ == pytest.approx(np.average(X[:, 0], weights=weights[:, 0]))


def test_class_pure_expert_becomes_prior_dummy():
    X = np.arange(6.0)[:, None]
    y = np.array([0, 0, 0, 1, 1, 1])
    weights = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], float).T
    pure, mixed = fit_experts(
        [LogisticRegression()] * 2, X, y, weights, is_classifier=True, y_is_1d=True
    )
    assert isinstance(pure, DummyClassifier) and list(pure.classes_) == [0]
    assert isinstance(mixed, LogisticRegression) and list(mixed.classes_) == [0, 1]


def test_sample_weight_key_routes_through_pipeline():
    assert sample_weight_key(Ridge()) == "sample_weight"
    pipe = make_pipeline(StandardScaler(), Ridge())
    assert sample_weight_key(pipe) == "ridge__sample_weight"
    assert sample_weight_key(KNeighborsRegressor()) is None
    assert (
        sample_weight_key(make_pipeline(StandardScaler(), KNeighborsRegressor()))
        is None
    )


def test_check_experts_names_the_offender():
    with pytest.raises(
        ValueError, match=r"'knn' \(KNeighborsRegressor\).*sample_weight"
    ):
        check_experts(
            ["lin", "knn"], [Ridge(), KNeighborsRegressor()], need_proba=False
        )
    with pytest.raises(ValueError, match=r"SVC.*predict_proba.*probability=True"):
        check_experts(["svc"], [SVC()], need_proba=True)
    check_experts(["svc"], [SVC(probability=True)], need_proba=True)


def test_plain_grams_flags_what_the_per_expert_check_would_change():
    # fit_experts tests all experts' Gram matrices at once and sends only the
    # flagged ones through recentred_gram: the two must agree on which
    # matrices that check returns unchanged
    from skmoe._em._stats import plain_grams, recentred_gram, weighted_grams

    rng = np.random.RandomState(0)
    X = rng.standard_normal((400, 3)) + [0.0, 50.0, 0.0]
    X[:, 2] = np.where(np.arange(400) < 200, X[:, 2], 7.0)  # one value for some
    Y = rng.standard_normal((400, 1))
    weights = np.column_stack(
        [
            rng.uniform(size=400),  # plain
            np.where(np.arange(400) < 200, 0.0, 1.0),  # sees one value of x2
            np.where(np.arange(400) == 3, 1.0, 0.0),  # one row: cancels
            np.zeros(400),  # no weight
        ]
    )
    x_shift = X.mean(axis=0)
    grams = weighted_grams(X, x_shift, Y, weights)
    plain = plain_grams(grams, x_shift)
    unchanged = []
    for k, gram in enumerate(grams):
        w = np.ascontiguousarray(weights[:, k : k + 1])
        shift, out = recentred_gram(
            gram, x_shift, lambda s, w=w: weighted_grams(X, s, Y, w)[0]
        )
        unchanged.append(out is gram and shift is x_shift)
    assert plain.tolist() == [True, False, False, False]
    assert unchanged[0] and not unchanged[1] and not unchanged[2]
    # zero weight: returned as is by the check, flagged here (its own path)
    assert unchanged[3]


def test_row_chunks_over_threads_give_the_whole_products(monkeypatch):
    # the Gram matrices and the linear experts' predictions are BLAS
    # products per chunk of rows, the chunks split over threads: the Gram
    # matrices equal the whole weighted products, the predictions each
    # expert's predict
    import skmoe._em._stats as experts_module

    monkeypatch.setattr(experts_module, "_MEANS_CHUNK_ROWS", 1000)
    monkeypatch.setattr(experts_module, "n_threads", lambda: 3)
    rng = np.random.RandomState(4)
    X = rng.standard_normal((12_345, 4)) + 10.0
    Y = X @ rng.standard_normal((4, 2)) + rng.standard_normal((12_345, 2))
    weights = rng.uniform(size=(12_345, 2))
    x_shift = X.mean(axis=0)
    grams = experts_module.weighted_grams(X, x_shift, Y, weights)
    Z = np.column_stack([X - x_shift, np.ones(12_345), Y])
    for k in range(2):
        np.testing.assert_allclose(
            grams[k], Z.T @ (weights[:, [k]] * Z), rtol=1e-11, atol=1e-9
        )
    fitted = [
        LinearRegression().fit(X, Y),
        Ridge(alpha=2.0).fit(X, Y),
        DecisionTreeRegressor(max_depth=2).fit(X, Y),
    ]
    index, means = experts_module.linear_expert_means(fitted, X, 2)
    assert index == [0, 1]
    assert means.shape == (12_345, 2, 2)
    for j, k in enumerate(index):
        np.testing.assert_allclose(means[:, j, :], fitted[k].predict(X), rtol=1e-12)
