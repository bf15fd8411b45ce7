"""Model selection: BIC/AIC/ICL, hard assignments, Pipelines, the scorer."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    log_likelihood_scorer,
    select_n_experts,
)
from skmoe.datasets import make_moe_classification, make_moe_regression


@pytest.fixture(scope="module")
def data():
    return make_moe_regression(n_samples=900, n_experts=3, noise=0.2, random_state=1)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return MixtureOfExpertsRegressor(n_init=3, random_state=0).fit(X, y)


def test_icl_is_bic_on_the_classification_likelihood(fitted, data):
    X, y = data
    resp = fitted.responsibilities(X, y)
    z = fitted.clusters(X, y)
    np.testing.assert_array_equal(z, resp.argmax(axis=1))
    # log(g_z p_z(y)) from the gate and the experts' Gaussian densities
    gate = fitted.predict_gate(X)
    means = fitted.predict_expert(X)
    std = np.sqrt(fitted.noise_variance_)
    rows = np.arange(len(X))
    mu, s = means[rows, z], std[z]
    log_joint = (
        np.log(gate[rows, z])
        - 0.5 * np.log(2 * np.pi * s**2)
        - 0.5 * ((y - mu) / s) ** 2
    )
    expected = -2 * log_joint.sum() + fitted.n_parameters() * np.log(len(X))
    assert fitted.icl(X, y) == pytest.approx(expected, rel=1e-10)
    # the classification likelihood is below the likelihood: ICL >= BIC
    assert fitted.icl(X, y) > fitted.bic(X, y)


def test_clusters_recover_the_generating_experts():
    X, y, params = make_moe_regression(
        n_samples=900, n_experts=3, noise=0.05, random_state=1, return_params=True
    )
    z_true = params.expert
    est = MixtureOfExpertsRegressor(n_init=3, random_state=0).fit(X, y)
    z = est.clusters(X, y)
    # the labelling is arbitrary: match each fitted expert to a true one
    agree = pd.crosstab(z, z_true).to_numpy()
    assert agree.max(axis=1).sum() / len(X) > 0.95


def test_icl_prefers_separated_experts(data):
    X, y = data
    _, table = select_n_experts(
        MixtureOfExpertsRegressor(n_init=2, random_state=0),
        X,
        y,
        range(1, 5),
        criterion="icl",
    )
    assert table["icl"].idxmin() == 3
    assert (table["icl"] >= table["bic"]).all()


def test_select_n_experts_takes_a_pipeline(data):
    X, y = data
    X = X * [100.0, 1e-3]  # unscaled columns, for the scaler to fix
    pipe = make_pipeline(
        StandardScaler(), MixtureOfExpertsRegressor(n_init=2, random_state=0)
    )
    best, table = select_n_experts(pipe, X, y, [1, 3])
    assert best[-1].n_experts_ == 3
    # the criteria are those of the mixture on the scaled inputs
    X_scaled = StandardScaler().fit_transform(X)
    assert table.loc[3, "bic"] == pytest.approx(best[-1].bic(X_scaled, y))
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    best_w, _ = select_n_experts(pipe, X, y, [3], sample_weight=w)
    assert best_w[-1].log_likelihood_ != pytest.approx(best[-1].log_likelihood_)


def test_select_n_experts_refuses_what_is_not_a_mixture(data):
    X, y = data
    with pytest.raises(TypeError, match="last step must be a MixtureOfExperts"):
        select_n_experts(make_pipeline(StandardScaler(), LinearRegression()), X, y)
    with pytest.raises(TypeError, match="got LinearRegression"):
        select_n_experts(LinearRegression(), X, y)
    with pytest.raises(ValueError, match="criterion must be one of"):
        select_n_experts(MixtureOfExpertsRegressor(), X, y, criterion="dic")


def test_log_likelihood_scorer_is_the_mean_held_out_log_density(fitted, data):
    X, y = data
    score = log_likelihood_scorer(fitted, X[:100], y[:100])
    assert score == pytest.approx(
        fitted.conditional_log_likelihood(X[:100], y[:100]).mean()
    )
    pipe = make_pipeline(StandardScaler(), MixtureOfExpertsRegressor(random_state=0))
    pipe.fit(X, y)
    X_scaled = pipe[0].transform(X[:100])
    assert log_likelihood_scorer(pipe, X[:100], y[:100]) == pytest.approx(
        pipe[-1].conditional_log_likelihood(X_scaled, y[:100]).mean()
    )


def test_grid_search_tunes_by_held_out_log_likelihood(data):
    X, y = data
    grid = GridSearchCV(
        MixtureOfExpertsRegressor(random_state=0),
        {"n_experts": [1, 3]},
        scoring=log_likelihood_scorer,
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    assert grid.best_params_ == {"n_experts": 3}
    means = grid.cv_results_["mean_test_score"]
    assert means[1] > means[0] + 0.5  # three experts explain the noise far better


def test_log_likelihood_scorer_on_a_classifier():
    X, y = make_moe_classification(n_samples=400, random_state=0)
    scores = cross_val_score(
        MixtureOfExpertsClassifier(n_experts=2, random_state=0),
        X,
        y,
        scoring=log_likelihood_scorer,
        cv=3,
    )
    # log p(y | x) of a class label is at most 0, and beats guessing
    assert np.all(scores < 0)
    assert np.all(scores > np.log(1 / len(np.unique(y))))


def test_n_experts_auto_chooses_by_bic(data):
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts="auto", n_init=3, random_state=0)
    est.fit(X, y)
    table = est.n_experts_selection_
    assert list(table.index) == [1, 2, 3, 4, 5, 6]
    assert est.n_experts_ == table["bic"].idxmin() == 3
    assert len(est.experts_) == 3
    assert est.get_params()["n_experts"] == "auto"
    assert est.bic(X, y) == pytest.approx(table.loc[3, "bic"])
    # the same fit as asking for three experts
    three = MixtureOfExpertsRegressor(n_experts=3, n_init=3, random_state=0).fit(X, y)
    assert est.log_likelihood_ >= three.log_likelihood_ - 1e-6 * abs(
        three.log_likelihood_
    )
    # a warm start continues with the number chosen
    est.set_params(warm_start=True).fit(X, y)
    assert est.n_experts_ == 3


def test_n_experts_auto_refuses_what_it_cannot_choose(data):
    X, y = data
    from sklearn.tree import DecisionTreeRegressor

    with pytest.raises(ValueError, match="estimators fixes the experts"):
        MixtureOfExpertsRegressor(
            n_experts="auto",
            estimators=[("a", LinearRegression()), ("b", DecisionTreeRegressor())],
        ).fit(X, y)
    with pytest.raises(ValueError, match="n_experts"):
        MixtureOfExpertsRegressor(n_experts="many").fit(X, y)
    from sklearn.svm import SVR

    with pytest.raises(ValueError, match="needs the experts' parameter count"):
        MixtureOfExpertsRegressor(SVR(), n_experts="auto", max_iter=3).fit(X, y)


def test_candidates_with_too_few_rows_per_parameter_are_not_chosen(data):
    X, y = data
    est = MixtureOfExpertsRegressor(n_init=2, random_state=0)
    best, table = select_n_experts(est, X, y, [1, 2, 3])
    assert best.n_experts_ == 3
    # 900 rows, 3 coefficients per expert: about 100 rows per parameter
    # with three experts, 300 with one
    assert 50 < table.loc[3, "rows_per_parameter"] < 150
    assert table.loc[1, "rows_per_parameter"] == pytest.approx(300)
    guarded, same = select_n_experts(est, X, y, [1, 2, 3], min_rows_per_parameter=150)
    np.testing.assert_allclose(same["bic"], table["bic"])
    qualifies = same["rows_per_parameter"] >= 150
    assert not qualifies[3]
    assert guarded.n_experts_ == same["bic"][qualifies].idxmin()
