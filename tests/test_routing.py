"""Sparse routing in training: top-k and expert choice with a capacity."""

import math
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.utils._param_validation import InvalidParameterError

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._routing import Router, expert_choice_mask
from skmoe.datasets import make_moe_classification, make_moe_regression


def _fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


def test_top_k_routes_keep_each_rows_largest_gates():
    log_gate = np.log(np.random.RandomState(0).dirichlet(np.ones(6), size=500))
    routed, _ = Router("top_k", 2, 1.25).route(log_gate, np.ones(500))
    mask = np.isfinite(routed)
    assert np.all(mask.sum(axis=1) == 2)
    kept = np.where(mask, log_gate, np.inf).min(axis=1)
    dropped = np.where(mask, -np.inf, log_gate).max(axis=1)
    assert np.all(kept >= dropped)


@pytest.mark.parametrize("capacity_factor", [1.0, 1.25, 2.0])
def test_expert_choice_loads_never_exceed_the_capacity(capacity_factor):
    """Every row of positive weight gets an expert, every expert exactly its
    capacity (it fills its room), none more; an expert the gate has all but
    switched off still gets its rows; rows of zero weight get one expert."""
    rng = np.random.RandomState(0)
    n, K = 1000, 7
    log_gate = np.log(rng.dirichlet(np.ones(K), size=n))
    log_gate[:, 3] -= 50.0  # expert 3 all but off
    positive = rng.rand(n) > 0.1
    capacity = Router("expert_choice", 2, capacity_factor).capacity(positive.sum(), K)
    assert capacity == math.ceil(capacity_factor * positive.sum() / K)
    mask = expert_choice_mask(log_gate, positive, capacity)
    assert np.all(mask[positive].any(axis=1))
    np.testing.assert_array_equal(mask[positive].sum(axis=0), capacity)
    assert np.all(mask[~positive].sum(axis=1) == 1)


def test_routed_gate_is_renormalised_over_each_rows_experts():
    log_gate = np.log(np.random.RandomState(1).dirichlet(np.ones(5), size=50))
    routed, routes = Router("top_k", 3, 1.25).route(log_gate, np.ones(50))
    rows = routes.rows
    np.testing.assert_allclose(np.exp(routed).sum(axis=1), 1.0)
    assert sorted(np.concatenate(rows)) == sorted(
        np.flatnonzero(np.isfinite(routed)) // 5
    )


def test_top_k_through_every_expert_is_dense_em(monkeypatch):
    """The routed code path (the E-step on the renormalised gate, each expert
    on its rows) with k = n_experts is soft EM: the same curve."""
    import skmoe._base as base

    X, y = make_moe_regression(n_samples=600, n_experts=3, random_state=0)
    kw = dict(n_experts=3, random_state=0, max_iter=30)
    dense = _fit(MixtureOfExpertsRegressor(**kw), X, y)
    monkeypatch.setattr(
        base.Router, "of", classmethod(lambda cls, est, K: cls("top_k", K, 1.25))
    )
    routed = _fit(MixtureOfExpertsRegressor(routing="top_k", routing_k=3, **kw), X, y)
    assert routed.n_iter_ == dense.n_iter_
    np.testing.assert_allclose(
        routed.log_likelihood_curve_, dense.log_likelihood_curve_, rtol=1e-9
    )
    assert routed.summary()["routed_rows"].tolist() == [600] * 3
    # and without the patch, k >= n_experts is simply dense EM
    monkeypatch.undo()
    same = _fit(MixtureOfExpertsRegressor(routing="top_k", routing_k=5, **kw), X, y)
    np.testing.assert_array_equal(
        same.log_likelihood_curve_, dense.log_likelihood_curve_
    )


class _CountingExpert(LinearRegression):
    """LinearRegression that counts the rows it is fitted on and predicts
    (not the closed-form type: the experts' own fits and predictions)."""

    fitted_rows = predicted_rows = 0

    def fit(self, X, y, sample_weight=None):
        type(self).fitted_rows += X.shape[0]
        return super().fit(X, y, sample_weight=sample_weight)

    def predict(self, X):
        type(self).predicted_rows += X.shape[0]
        return super().predict(X)


def test_top_k_fits_and_evaluates_each_expert_on_its_rows_only():
    X, y = make_moe_regression(n_samples=1000, n_experts=6, random_state=0)
    _CountingExpert.fitted_rows = _CountingExpert.predicted_rows = 0
    est = _fit(
        MixtureOfExpertsRegressor(
            _CountingExpert(),
            n_experts=6,
            routing="top_k",
            routing_k=2,
            random_state=0,
            max_iter=10,
        ),
        X,
        y,
    )
    n, k, M = len(y), 2, est.n_iter_
    # the first M-step fits on the start's one-hot rows, each later one on
    # at most k experts per row; each E-step evaluates k experts per row,
    # and each M-step's noise variances read the rows it fitted
    assert _CountingExpert.fitted_rows <= n + (M - 1) * n * k
    assert _CountingExpert.predicted_rows <= M * n * k + _CountingExpert.fitted_rows
    assert est.summary()["routed_rows"].sum() == n * k


def test_expert_choice_keeps_every_expert_fed_where_dense_em_starves_some():
    """Eight experts on a three-expert mixture from random starts: dense EM
    leaves two with under 1% of the weight; under expert choice every expert
    holds its capacity of rows and at least 2% of the weight."""
    X, y = make_moe_regression(
        n_samples=2000, n_features=2, n_experts=3, noise=0.3, random_state=1
    )
    kw = dict(n_experts=8, random_state=0, init="random")
    dense = _fit(MixtureOfExpertsRegressor(**kw), X, y).summary()
    assert (dense["effective_samples"] < 0.01 * len(y)).sum() >= 2
    routed = _fit(MixtureOfExpertsRegressor(routing="expert_choice", **kw), X, y)
    summary = routed.summary()
    capacity = math.ceil(1.25 * len(y) / 8)
    assert summary["routed_rows"].tolist() == [capacity] * 8
    assert summary["effective_samples"].min() > 0.02 * len(y)


@pytest.mark.parametrize("routing", ["top_k", "expert_choice"])
def test_routed_classifier(routing):
    X, y = make_moe_classification(
        n_samples=1500, n_features=3, n_experts=4, n_classes=3, random_state=0
    )
    dense = _fit(MixtureOfExpertsClassifier(n_experts=4, random_state=0), X, y)
    routed = _fit(
        MixtureOfExpertsClassifier(n_experts=4, routing=routing, random_state=0), X, y
    )
    assert np.isfinite(routed.log_likelihood_)
    assert routed.score(X, y) > dense.score(X, y) - 0.05
    rows = routed.summary()["routed_rows"]
    if routing == "top_k":
        assert rows.sum() == 2 * len(y)
    else:
        assert rows.max() <= math.ceil(1.25 * len(y) / 4)


def test_routing_is_refused_where_it_is_not_built():
    X, y = make_moe_regression(n_samples=200, n_experts=2, random_state=0)
    with pytest.raises(ValueError, match="cannot route rows sparsely"):
        MixtureOfExpertsRegressor(routing="top_k", training="gradient").fit(X, y)
    # partial_fit is not offered: the reason is the error's cause
    with pytest.raises(AttributeError) as info:
        MixtureOfExpertsRegressor(routing="expert_choice").partial_fit(X, y)
    assert "cannot route rows sparsely" in str(info.value.__cause__)
    with pytest.raises(InvalidParameterError, match="capacity_factor"):
        MixtureOfExpertsRegressor(routing="expert_choice", capacity_factor=0.5).fit(
            X, y
        )
    with pytest.raises(InvalidParameterError, match="routing"):
        MixtureOfExpertsRegressor(routing="switch").fit(X, y)


@pytest.mark.parametrize(
    ("estimator", "routing"),
    [
        (MixtureOfExpertsRegressor, dict(routing="expert_choice")),
        (MixtureOfExpertsRegressor, dict(routing="top_k", routing_k=1)),
        (MixtureOfExpertsClassifier, dict(routing="top_k")),
    ],
)
def test_routing_over_dask_is_top_k_of_two_or_more_for_the_regressor(
    estimator, routing
):
    da = pytest.importorskip("dask.array")
    X, y = make_moe_regression(n_samples=200, n_experts=2, random_state=0)
    if estimator is MixtureOfExpertsClassifier:
        y = (y > np.median(y)).astype(int)
    with pytest.raises(
        ValueError,
        match="out of core.* cannot route rows sparsely.*routing_k >= 2 for "
        "MixtureOfExpertsRegressor",
    ):
        estimator(n_experts=3, **routing).fit(
            da.from_array(X, chunks=100), da.from_array(y, chunks=100)
        )


def test_top_k_over_dask_is_the_in_memory_fit():
    """Top-2 routing streamed over a Dask array's chunks: the routed pass
    per chunk, the sums added up, the gate's block-Newton step tested by
    passes; on rows that all fit the subsample it is the in-memory fit, to
    round-off (the chunks' sums are added in another order)."""
    da = pytest.importorskip("dask.array")
    X, y = make_moe_regression(n_samples=2000, n_experts=4, random_state=1)
    kw = dict(n_experts=4, routing="top_k", routing_k=2, random_state=0, max_iter=12)
    memory = _fit(MixtureOfExpertsRegressor(**kw), X, y)
    streamed = _fit(
        MixtureOfExpertsRegressor(**kw),
        da.from_array(X, chunks=(500, -1)),
        da.from_array(y, chunks=500),
    )
    assert streamed.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(
        streamed.log_likelihood_curve_, memory.log_likelihood_curve_, rtol=1e-7
    )
    np.testing.assert_allclose(
        streamed.gate_.coef_, memory.gate_.coef_, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_array_equal(
        streamed.summary()["routed_rows"], memory.summary()["routed_rows"]
    )
    assert streamed.summary()["routed_rows"].sum() == 2 * 2000


@pytest.mark.parametrize("closed_form", [True, False])
def test_routed_gate_m_step_lowers_the_routed_objective_at_fixed_routes(closed_form):
    """Under top-k routing the gate's warm M-step lowers the routed model's
    own gate objective at the E-step's routes (the softmax over each row's
    experts), from the gate it starts at: that objective never rises, so for
    fixed routes the iteration is a generalised EM step of the routed model.
    Linear experts take the routed pass's block-Newton step, other experts
    the L-BFGS fit."""
    from skmoe._backends._numpy import InMemoryBackend
    from skmoe._gates._softmax import SoftmaxGateFit
    from skmoe._kernels import routed_gate_objective_numpy

    X, y = make_moe_regression(n_samples=3000, n_experts=6, random_state=2)
    seen = []

    def objective(fit, g, indptr, experts, targets):
        loss, _ = routed_gate_objective_numpy(
            fit.X,
            g._mean,
            g._scale,
            g._theta,
            indptr,
            experts,
            targets,
            fit.sample_weight,
        )
        return loss + g.penalty()

    if closed_form:
        owner, name = InMemoryBackend, "_routed_m_step"
        real = owner._routed_m_step

        def watched(self, state, posterior, routed):
            at = (routed.routes.indptr, routed.routes.experts, routed.targets)
            before = objective(self, state.gate, *at)
            new = real(self, state, posterior, routed)
            seen.append((before, objective(self, new.gate, *at), np.diff(at[0])))
            return new

    else:
        owner, name = SoftmaxGateFit, "fit_routed"
        real = owner.fit_routed

        def watched(self, gate, indptr, experts, targets, *args):
            before = objective(self, gate, indptr, experts, targets)
            fitted = real(self, gate, indptr, experts, targets, *args)
            after = objective(self, fitted, indptr, experts, targets)
            seen.append((before, after, np.diff(indptr)))
            return fitted

    setattr(owner, name, watched)
    try:
        _fit(
            MixtureOfExpertsRegressor(
                estimator=None if closed_form else _CountingExpert(),
                n_experts=6,
                routing="top_k",
                routing_k=2,
                random_state=0,
                max_iter=8,
            ),
            X,
            y,
        )
    finally:
        setattr(owner, name, real)
    assert len(seen) >= 5
    for before, after, counts in seen:
        assert np.all(counts == 2)
        assert after <= before + 1e-9 * abs(before)
    assert any(after < before - 1e-3 * abs(before) for before, after, _ in seen)
