"""scikit-learn habits: Pipeline, GridSearchCV, clone, pickle, pandas, errors."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression


@pytest.fixture(scope="module")
def reg_data():
    return make_moe_regression(n_samples=600, n_features=3, random_state=0)


@pytest.fixture(scope="module")
def clf_data():
    return make_moe_classification(n_samples=600, n_features=3, random_state=0)


def test_pipeline_and_grid_search_over_experts_and_their_params(reg_data):
    X, y = reg_data
    pipe = make_pipeline(
        StandardScaler(),
        MixtureOfExpertsRegressor(DecisionTreeRegressor(), max_iter=20, random_state=0),
    )
    grid = GridSearchCV(
        pipe,
        {
            "mixtureofexpertsregressor__n_experts": [1, 3],
            "mixtureofexpertsregressor__estimator__max_depth": [1, 4],
        },
        cv=3,
    )
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_params_["mixtureofexpertsregressor__n_experts"] == 3
    depth = grid.best_params_["mixtureofexpertsregressor__estimator__max_depth"]
    best = grid.best_estimator_[-1]
    assert len(best.experts_) == 3
    assert best.estimator.max_depth == depth
    assert all(e.get_depth() <= depth for e in best.experts_)


def test_heterogeneous_experts_have_nested_params(reg_data):
    X, y = reg_data
    est = MixtureOfExpertsRegressor(
        estimators=[("lin", LinearRegression()), ("tree", DecisionTreeRegressor())],
        max_iter=10,
        random_state=0,
    )
    params = est.get_params()
    assert params["lin"] is est.estimators[0][1]
    assert "tree__max_depth" in params
    est.set_params(tree__max_depth=2)
    assert est.estimators[1][1].max_depth == 2
    est.fit(X, y)
    assert est.expert_names_ == ["lin", "tree"]
    assert isinstance(est.experts_[0], LinearRegression)
    assert est.experts_[1].get_depth() <= 2
    assert est.n_experts_ == 2


def test_clone_and_pickle_round_trip(reg_data, clf_data):
    for Est, (X, y) in [
        (MixtureOfExpertsRegressor, reg_data),
        (MixtureOfExpertsClassifier, clf_data),
    ]:
        est = Est(n_experts=2, random_state=0).fit(X, y)
        again = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(again.predict(X), est.predict(X))
        np.testing.assert_array_equal(again.predict_gate(X), est.predict_gate(X))
        fresh = clone(est)
        assert not hasattr(fresh, "experts_")
        assert fresh.get_params() == Est(n_experts=2, random_state=0).get_params()


def test_pandas_feature_names(reg_data):
    X, y = reg_data
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    est = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, ["a", "b", "c"])
    np.testing.assert_allclose(est.predict(df), est.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df[["c", "b", "a"]])


def test_predictions_do_not_depend_on_batch(reg_data, clf_data):
    for Est, (X, y), methods in [
        (MixtureOfExpertsRegressor, reg_data, ["predict", "predict_gate"]),
        (MixtureOfExpertsClassifier, clf_data, ["predict_proba", "predict_gate"]),
    ]:
        est = Est(n_experts=2, top_k=1, random_state=0).fit(X, y)
        order = np.random.RandomState(0).permutation(len(X))
        for method in methods:
            full = getattr(est, method)(X)
            np.testing.assert_allclose(getattr(est, method)(X[order]), full[order])
            np.testing.assert_allclose(getattr(est, method)(X[:7]), full[:7])


def test_zero_weight_equals_removing_rows(reg_data):
    X, y = reg_data
    w = np.ones(len(y))
    w[::3] = 0
    kw = dict(n_experts=2, random_state=0, tol=1e-10, max_iter=500)
    weighted = MixtureOfExpertsRegressor(**kw).fit(X, y, sample_weight=w)
    removed = MixtureOfExpertsRegressor(**kw).fit(X[w > 0], y[w > 0])
    assert weighted.log_likelihood_ == pytest.approx(removed.log_likelihood_, rel=1e-6)
    np.testing.assert_allclose(
        weighted.predict(X), removed.predict(X), rtol=1e-4, atol=1e-4
    )


def test_warm_start_continues_from_previous_fit(reg_data):
    X, y = reg_data
    est = MixtureOfExpertsRegressor(max_iter=3, tol=0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est.fit(X, y)
    first = est.log_likelihood_
    est.set_params(warm_start=True, max_iter=200, tol=1e-8)
    est.fit(X, y)
    assert est.converged_
    assert est.log_likelihood_ >= first
    assert est.log_likelihood_curve_[0] >= first - 1e-6 * abs(first)
    with pytest.raises(ValueError, match="same number of experts"):
        est.set_params(n_experts=5).fit(X, y)


def test_verbose_prints_iterations(reg_data, capsys):
    X, y = reg_data
    MixtureOfExpertsRegressor(n_experts=2, verbose=1, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "iteration    1" in out and "log-likelihood" in out and "change" in out


def test_not_fitted_and_shape_errors(reg_data):
    X, y = reg_data
    est = MixtureOfExpertsRegressor(n_experts=2)
    with pytest.raises(NotFittedError):
        est.predict(X)
    est.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :2])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])


@pytest.mark.parametrize(
    "params, match",
    [
        (
            dict(estimator=Ridge(), estimators=[("a", Ridge())]),
            "either estimator",
        ),
        (dict(estimator=KNeighborsRegressor()), r"KNeighborsRegressor.*sample_weight"),
        (dict(estimators=[]), "estimators is empty"),
        (dict(estimators=[("a", Ridge()), ("a", Ridge())]), "unique"),
        (dict(top_k=4), "top_k=4 is larger than n_experts=3"),
        (dict(n_experts=0), "n_experts"),
        (dict(init="spectral"), "init"),
    ],
)
def test_bad_parameters_raise_clear_errors(reg_data, params, match):
    X, y = reg_data
    with pytest.raises((ValueError, TypeError), match=match):
        MixtureOfExpertsRegressor(**params).fit(X, y)


def test_classifier_expert_without_weights_or_proba_is_refused(clf_data):
    X, y = clf_data
    with pytest.raises(ValueError, match=r"KNeighborsClassifier.*sample_weight"):
        MixtureOfExpertsClassifier(KNeighborsClassifier()).fit(X, y)
    with pytest.raises(ValueError, match="only one class"):
        MixtureOfExpertsClassifier(DecisionTreeClassifier()).fit(X, np.ones(len(X)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_refused(reg_data, bad):
    X, y = reg_data
    Xb = X.copy()
    Xb[3, 1] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        MixtureOfExpertsRegressor().fit(Xb, y)
    yb = y.copy()
    yb[5] = bad
    with pytest.raises(ValueError, match="Input y contains (NaN|infinity)"):
        MixtureOfExpertsRegressor().fit(X, yb)


def test_negative_or_all_zero_weights_are_refused(reg_data):
    X, y = reg_data
    with pytest.raises(ValueError, match="[Nn]egative"):
        MixtureOfExpertsRegressor().fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="non-zero|sums to zero"):
        MixtureOfExpertsRegressor().fit(X, y, sample_weight=np.zeros(len(y)))


def test_convergence_warning_when_max_iter_is_too_small(reg_data):
    X, y = reg_data
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        est = MixtureOfExpertsRegressor(max_iter=1, random_state=0).fit(X, y)
    assert est.n_iter_ == 1 and not est.converged_


def test_n_jobs_gives_the_same_fit(reg_data):
    X, y = reg_data
    kw = dict(estimator=DecisionTreeRegressor(max_depth=3), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        serial = MixtureOfExpertsRegressor(**kw).fit(X, y)
        parallel = MixtureOfExpertsRegressor(**kw, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(serial.predict(X), parallel.predict(X))


@pytest.mark.parametrize("Est", [MixtureOfExpertsRegressor, MixtureOfExpertsClassifier])
def test_integer_weights_equal_repeated_rows(Est, reg_data, clf_data):
    # the k-means start depends on the rows only through their weights
    X, y = reg_data if Est is MixtureOfExpertsRegressor else clf_data
    w = np.random.RandomState(0).randint(0, 4, size=len(y))
    kw = dict(n_experts=2, random_state=0, tol=1e-10, max_iter=300)
    weighted = Est(**kw).fit(X, y, sample_weight=w)
    repeated = Est(**kw).fit(X.repeat(w, axis=0), y.repeat(w))
    assert weighted.log_likelihood_ == pytest.approx(repeated.log_likelihood_, rel=1e-6)
    method = "predict" if Est is MixtureOfExpertsRegressor else "predict_proba"
    np.testing.assert_allclose(
        getattr(weighted, method)(X), getattr(repeated, method)(X), atol=1e-4
    )
