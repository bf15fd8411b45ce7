"""MixtureOfExpertsRegressor on data from a known mixture."""

import functools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression


@pytest.fixture(scope="module")
def mixture_data():
    return make_moe_regression(
        n_samples=4000,
        n_features=2,
        n_experts=3,
        noise=[0.1, 0.2, 0.3],
        return_params=True,
        random_state=0,
    )


@pytest.fixture(scope="module")
def fitted(mixture_data):
    X, y, _ = mixture_data
    return MixtureOfExpertsRegressor(n_experts=3, n_init=3, random_state=0).fit(X, y)


def _match(fitted_coef, true_coef):
    cost = ((fitted_coef[:, None, :] - true_coef[None]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]  # true expert of each fitted expert


def test_recovers_true_log_likelihood(mixture_data, fitted):
    X, y, params = mixture_data
    # the MLE explains the training data at least as well as the truth, and
    # not more than a few nats per parameter better (Wilks: about p / 2)
    n_params = 3 * 3 + 2 * 3 + 3  # experts' coefs + intercepts, gate, noise
    assert params.log_likelihood - 1.0 <= fitted.log_likelihood_
    assert fitted.log_likelihood_ <= params.log_likelihood + 2 * n_params
    assert fitted.converged_


def test_recovers_parameters_up_to_permutation(mixture_data, fitted):
    X, y, params = mixture_data
    coef = np.array([e.coef_ for e in fitted.experts_])
    perm = _match(coef, params.coef)
    np.testing.assert_allclose(coef, params.coef[perm], atol=0.05)
    intercept = np.array([e.intercept_ for e in fitted.experts_])
    np.testing.assert_allclose(intercept, params.intercept[perm], atol=0.05)
    np.testing.assert_allclose(
        np.sqrt(fitted.noise_variance_), params.noise[perm], rtol=0.15
    )
    # gate logits relative to the expert matched with true expert 0
    ref = int(np.flatnonzero(perm == 0)[0])
    gate_coef = fitted.gate_.coef_ - fitted.gate_.coef_[:, [ref]]
    np.testing.assert_allclose(gate_coef, params.gate_coef[:, perm], atol=0.6)
    # and the gate assigns rows to the right expert
    assigned = perm[np.argmax(fitted.predict_gate(X), axis=1)]
    true_best = np.argmax(X @ params.gate_coef, axis=1)
    assert np.mean(assigned == true_best) > 0.95


def test_score_samples_sum_to_log_likelihood(mixture_data, fitted):
    X, y, _ = mixture_data
    log_density = fitted.conditional_log_likelihood(X, y)
    assert log_density.shape == (len(y),)
    assert log_density.sum() == pytest.approx(fitted.log_likelihood_, rel=1e-10)
    resp = fitted.responsibilities(X, y)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("init", ["kmeans", "random"])
def test_em_log_likelihood_never_decreases(seed, init):
    X, y = make_moe_regression(
        n_samples=600, n_features=3, n_experts=3, noise=0.3, random_state=seed
    )
    est = MixtureOfExpertsRegressor(
        n_experts=3, gate_alpha=0.0, init=init, max_iter=60, tol=0, random_state=seed
    )
    with pytest.warns(Warning):  # tol=0 never converges
        est.fit(X, y)
    curve = est.log_likelihood_curve_
    assert len(curve) == 60
    assert np.all(np.diff(curve) >= -1e-9 * np.abs(curve[1:]))
    assert curve[-1] > curve[0] + 1.0


def test_gate_log_proba_reused_by_the_e_step_changes_nothing(monkeypatch):
    # the M-step hands the E-step (and the next M-step) the gate's
    # log-probabilities from Newton's last evaluation, and the gate's first
    # gradient comes from weighted sums (the experts' Gram matrices hold
    # the targets' part); without those shortcuts (a gate fit that keeps
    # nothing) EM recomputes them: the same path to round-off, iteration by
    # iteration
    import skmoe._backends._numpy as numpy_backend
    import skmoe._gates._softmax as softmax

    X, y = make_moe_regression(
        n_samples=3000, n_features=4, n_experts=4, noise=0.3, random_state=5
    )
    kw = dict(n_experts=4, max_iter=40, tol=1e-10, random_state=0)
    given = []
    objective = softmax.gate_objective

    def counted(*args):
        given.append(args[7])
        return objective(*args)

    monkeypatch.setattr(softmax, "gate_objective", counted)
    fast = MixtureOfExpertsRegressor(**kw).fit(X, y)
    # every first gradient came from the sums: no pass with given values
    assert given and not any(given)
    keeping_nothing = functools.partial(softmax.SoftmaxGateFit, keep=False)
    monkeypatch.setattr(numpy_backend, "SoftmaxGateFit", keeping_nothing)
    given.clear()
    plain = MixtureOfExpertsRegressor(**kw).fit(X, y)
    assert given and not any(given)
    assert fast.n_iter_ == plain.n_iter_ > 10
    np.testing.assert_allclose(
        fast.log_likelihood_curve_, plain.log_likelihood_curve_, rtol=1e-10
    )
    np.testing.assert_allclose(fast.gate_.coef_, plain.gate_.coef_, rtol=1e-7)


def test_warm_refit_on_other_rows_gives_the_fit_without_shortcuts(monkeypatch):
    # a warm_start refit on other rows of the same size starts its gate from
    # a pass over the new rows (each fit has its own workspace): the same fit
    # as without the weighted-sum shortcut
    import skmoe._gates._softmax as softmax

    X1, y1 = make_moe_regression(
        n_samples=3000, n_features=4, n_experts=3, noise=0.3, random_state=1
    )
    X2, y2 = make_moe_regression(
        n_samples=3000, n_features=4, n_experts=3, noise=0.3, random_state=2
    )
    kw = dict(n_experts=3, random_state=0, warm_start=True, max_iter=5, tol=0)

    def refit():
        model = MixtureOfExpertsRegressor(**kw)
        with pytest.warns(ConvergenceWarning):
            model.fit(X1, y1)
        with pytest.warns(ConvergenceWarning):
            model.fit(X2, y2)
        return model

    fast = refit()
    fit = softmax.SoftmaxGateFit.fit

    def without_sums(self, *args, target_sums=None, **kwargs):
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(softmax.SoftmaxGateFit, "fit", without_sums)
    plain = refit()
    np.testing.assert_allclose(
        fast.log_likelihood_curve_, plain.log_likelihood_curve_, rtol=1e-10
    )
    np.testing.assert_allclose(fast.gate_.coef_, plain.gate_.coef_, rtol=1e-7)


def test_cold_gate_on_a_subsample_reaches_the_same_optimum(monkeypatch):
    # above COLD_GATE_MAX_ROWS rows the first gate fit runs on a strided
    # subsample (weights scaled to the whole), then one Newton step on every
    # row: a different start for the gate, the same optimum, and EM's
    # objective still never decreases
    import skmoe._backends._numpy as numpy_backend
    import skmoe._gates._softmax as softmax

    X, y = make_moe_regression(
        n_samples=4000, n_features=3, n_experts=3, noise=0.3, random_state=8
    )
    kw = dict(n_experts=3, tol=1e-8, random_state=0)
    whole = MixtureOfExpertsRegressor(**kw).fit(X, y)
    rows_seen = []
    fit = softmax.SoftmaxGateFit.fit

    def recording_fit(self, gate, resp, *args, **kwargs):
        rows_seen.append(resp.shape[0])
        return fit(self, gate, resp, *args, **kwargs)

    monkeypatch.setattr(numpy_backend, "COLD_GATE_MAX_ROWS", 500)
    monkeypatch.setattr(softmax.SoftmaxGateFit, "fit", recording_fit)
    sub = MixtureOfExpertsRegressor(**kw).fit(X, y)
    # the first M-step fits the gate on 500 rows, then on every row (the
    # later M-steps take their one Newton step in the fused pass)
    assert rows_seen[:2] == [500, 4000] and set(rows_seen[1:]) == {4000}
    curve = sub.objective_curve_
    assert np.all(np.diff(curve) >= -1e-9 * np.abs(curve[1:]))
    # the first iteration's gate differs; where EM ends does not
    assert sub.log_likelihood_curve_[0] != whole.log_likelihood_curve_[0]
    np.testing.assert_allclose(sub.log_likelihood_, whole.log_likelihood_, rtol=1e-6)
    np.testing.assert_allclose(sub.gate_.coef_, whole.gate_.coef_, rtol=1e-3, atol=1e-3)


def test_fused_iterations_equal_the_unfused_ones(monkeypatch):
    # with linear experts and the softmax gate an EM iteration is one fused
    # pass over the rows (E-step, the gate's trial point, the next M-step's
    # Gram matrices and sums) and an M-step from those statistics; without
    # the fusion the same iteration takes its separate passes: the same
    # curve, iteration by iteration, to round-off
    import skmoe._backends._numpy as numpy_backend

    X, y = make_moe_regression(
        n_samples=3000, n_features=4, n_experts=4, noise=0.3, random_state=5
    )
    w = np.random.RandomState(0).uniform(0.5, 2.0, len(y))
    kw = dict(n_experts=4, max_iter=40, tol=1e-10, random_state=0)
    fused = MixtureOfExpertsRegressor(**kw).fit(X, y, sample_weight=w)
    # one pass per iteration (more only where the line search halves a step)
    assert fused.n_iter_ <= fused._fit_counts["fused_passes"] <= fused.n_iter_ + 2
    monkeypatch.setattr(numpy_backend, "one_step_warm_gate", lambda gate: False)
    plain = MixtureOfExpertsRegressor(**kw).fit(X, y, sample_weight=w)
    assert "fused_passes" not in plain._fit_counts
    assert fused.n_iter_ == plain.n_iter_ > 10
    np.testing.assert_allclose(
        fused.log_likelihood_curve_, plain.log_likelihood_curve_, rtol=1e-10
    )
    np.testing.assert_allclose(fused.noise_variance_, plain.noise_variance_, rtol=1e-8)
    np.testing.assert_allclose(fused.gate_.coef_, plain.gate_.coef_, rtol=1e-6)


def test_same_random_state_same_fit():
    X, y = make_moe_regression(n_samples=500, random_state=1)
    kw = dict(estimator=DecisionTreeRegressor(max_depth=3), n_init=2, init="random")
    a = MixtureOfExpertsRegressor(**kw, random_state=3).fit(X, y)
    b = MixtureOfExpertsRegressor(**kw, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.log_likelihood_curve_, b.log_likelihood_curve_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    c = MixtureOfExpertsRegressor(**kw, random_state=4).fit(X, y)
    assert not np.array_equal(a.log_likelihood_curve_, c.log_likelihood_curve_)


def test_n_init_keeps_the_best_restart():
    X, y = make_moe_regression(n_samples=800, n_experts=4, random_state=2)
    kw = dict(n_experts=4, init="random", random_state=0)
    one = MixtureOfExpertsRegressor(**kw, n_init=1).fit(X, y)
    five = MixtureOfExpertsRegressor(**kw, n_init=5).fit(X, y)
    # the first restart of n_init=5 is the n_init=1 fit
    assert five.log_likelihood_ >= one.log_likelihood_


@pytest.mark.parametrize(
    "expert",
    [
        Ridge(alpha=1.0),
        DecisionTreeRegressor(max_depth=4),
        HistGradientBoostingRegressor(max_iter=30),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_experts_beat_a_single_model(expert):
    X, y = make_moe_regression(n_samples=1500, noise=0.1, random_state=3)
    moe = MixtureOfExpertsRegressor(expert, n_experts=3, max_iter=30, random_state=0)
    moe.fit(X, y)
    single = LinearRegression().fit(X, y)
    assert moe.score(X, y) > single.score(X, y) + 0.1
    assert np.all(np.isfinite(moe.predict(X)))


def test_multi_output_targets():
    X, y1 = make_moe_regression(n_samples=1000, random_state=4)
    Y = np.column_stack([y1, -2 * y1 + 1])
    est = MixtureOfExpertsRegressor(random_state=0).fit(X, Y)
    assert est.noise_variance_.shape == (3, 2)
    pred = est.predict(X)
    assert pred.shape == (1000, 2)
    # the outputs share responsibilities, so an affine output stays affine
    np.testing.assert_allclose(pred[:, 1], -2 * pred[:, 0] + 1, atol=1e-8)
    np.testing.assert_allclose(est.noise_variance_[:, 1], 4 * est.noise_variance_[:, 0])
    assert est.predict_expert(X).shape == (1000, 3, 2)
    mean, std = est.predict(X, return_std=True)
    assert std.shape == (1000, 2) and np.all(std > 0)
    one = MixtureOfExpertsRegressor(n_experts=1).fit(X, Y)
    assert est.log_likelihood_ > one.log_likelihood_ + 500


def test_return_std_is_the_mixture_spread():
    X, y = make_moe_regression(n_samples=1000, random_state=5)
    est = MixtureOfExpertsRegressor(random_state=0).fit(X, y)
    mean, std = est.predict(X[:5], return_std=True)
    g, mu, var = est.predict_gate(X[:5]), est.predict_expert(X[:5]), est.noise_variance_
    np.testing.assert_allclose(mean, (g * mu).sum(axis=1))
    np.testing.assert_allclose(std**2, (g * (var + mu**2)).sum(axis=1) - mean**2)


def test_top_k_routes_rows_only_to_their_experts():
    X, y = make_moe_regression(n_samples=1000, n_experts=3, random_state=6)
    est = MixtureOfExpertsRegressor(random_state=0).fit(X, y)
    gate, experts = est.predict_gate(X), est.predict_expert(X)
    np.testing.assert_allclose(
        est.set_params(top_k=3).predict(X), (gate * experts).sum(1)
    )
    top1 = est.set_params(top_k=1).predict(X)
    np.testing.assert_allclose(top1, experts[np.arange(1000), gate.argmax(axis=1)])

    calls = []
    for e in est.experts_:
        orig = e.predict
        e.predict = lambda Z, orig=orig: (calls.append(len(Z)), orig(Z))[1]
    est.predict(X)
    assert sum(calls) == 1000  # each row went to one expert only
    assert sum(calls) < 3 * 1000


def test_dead_expert_is_reseeded_with_a_warning_not_nan():
    rng = np.random.RandomState(7)
    X = rng.standard_normal((300, 2))
    y = X @ [1.0, -1.0] + 0.1 * rng.standard_normal(300)
    useless = DummyRegressor(strategy="constant", constant=1e6)
    est = MixtureOfExpertsRegressor(
        estimators=[("good", LinearRegression()), ("useless", useless)],
        init="random",
        max_iter=5,
        random_state=0,
    )
    with pytest.warns(UserWarning, match=r"Expert\(s\) \[1\] collapsed"):
        est.fit(X, y)
    assert np.isfinite(est.log_likelihood_)
    assert np.all(np.isfinite(est.predict(X)))
    assert np.all(np.isfinite(est.noise_variance_))


def test_exact_fit_hits_the_variance_floor_not_zero():
    X = np.linspace(-1, 1, 200)[:, None]
    y = np.where(X[:, 0] < 0, 2 * X[:, 0], -3 * X[:, 0] + 1)
    est = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    # both experts interpolate: their variance sits at the floor, 1e-6 var(y)
    np.testing.assert_allclose(est.noise_variance_, 1e-6 * y.var(), rtol=1e-6)
    assert np.all(np.isfinite(est.log_likelihood_curve_))
    # the mean blends the two lines only at the jump, where the gate is soft
    away = np.abs(X[:, 0]) > 0.1
    np.testing.assert_allclose(est.predict(X)[away], y[away], atol=1e-3)
