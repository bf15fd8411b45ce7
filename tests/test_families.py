"""Poisson and Gamma experts (``family=``): recovery, likelihood, predictive, errors."""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from scipy.linalg import LinAlgWarning
from scipy.special import digamma, logsumexp
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import GammaRegressor, LinearRegression, PoissonRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmoe import MixtureOfExpertsRegressor, compare
from skmoe.__main__ import main
from skmoe._experts import fit_experts
from skmoe._likelihoods import gamma_shape_mle
from skmoe._predictive import mixture_modes, mixture_quantiles, sample_mixture

# the known mixture: expert 1 takes x > 0 (gate logit 3 x), each expert
# log-linear in x
GATE_SLOPE = 3.0
COEF = np.array([[2.0, -0.7], [1.0, 0.5]])  # (intercept, slope) per expert
SHAPES = np.array([2.0, 6.0])


def _draw(n, seed, family):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, size=(n, 1))
    second = rng.rand(n) < 1 / (1 + np.exp(-GATE_SLOPE * X[:, 0]))
    k = second.astype(int)
    mu = np.exp(COEF[k, 0] + COEF[k, 1] * X[:, 0])
    if family == "poisson":
        y = rng.poisson(mu).astype(float)
    else:
        y = rng.gamma(SHAPES[k], mu / SHAPES[k])
    return X, y


@pytest.fixture(scope="module")
def poisson_data():
    return _draw(3000, 0, "poisson")


@pytest.fixture(scope="module")
def gamma_data():
    return _draw(3000, 1, "gamma")


@pytest.fixture(scope="module")
def poisson_fit(poisson_data):
    X, y = poisson_data
    return MixtureOfExpertsRegressor(
        family="poisson", n_experts=2, n_init=3, random_state=0
    ).fit(X, y)


@pytest.fixture(scope="module")
def gamma_fit(gamma_data):
    X, y = gamma_data
    return MixtureOfExpertsRegressor(
        family="gamma", n_experts=2, n_init=3, random_state=0
    ).fit(X, y)


def _by_slope(model):
    """Expert indices ordered as COEF: the falling expert first."""
    return np.argsort([e.coef_[0] for e in model.experts_])


# -- the default experts and the fit


@pytest.mark.parametrize(
    "family, expert", [("poisson", PoissonRegressor), ("gamma", GammaRegressor)]
)
def test_default_expert_is_the_family_glm_unpenalised(family, expert):
    model = MixtureOfExpertsRegressor(family=family)
    template = model._default_expert()
    assert type(template) is expert
    # an exact weighted maximum-likelihood M-step: no penalty
    assert template.alpha == 0.0
    assert template.solver == "newton-cholesky"


def test_family_is_validated():
    X, y = _draw(100, 0, "poisson")
    with pytest.raises(ValueError, match="family"):
        MixtureOfExpertsRegressor(family="binomial").fit(X, y)


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_parameters_recovered(family, request):
    model = request.getfixturevalue(f"{family}_fit")
    order = _by_slope(model)
    coef = np.array(
        [[model.experts_[k].intercept_, model.experts_[k].coef_[0]] for k in order]
    )
    np.testing.assert_allclose(coef, COEF, atol=0.12)
    # the gate sends x > 0 to the rising expert
    gate = model.predict_gate(np.array([[-1.5], [1.5]]))
    assert gate[0, order[0]] > 0.9 and gate[1, order[1]] > 0.9
    if family == "gamma":
        np.testing.assert_allclose(model.shape_[order], SHAPES, rtol=0.2)
        assert not hasattr(model, "noise_variance_")
    else:
        assert not hasattr(model, "noise_variance_")
        assert not hasattr(model, "shape_")


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_log_likelihood_never_decreases_under_exact_em(family, request):
    X, y = request.getfixturevalue(f"{family}_data")
    # from a random start, without a gate penalty: the log-likelihood is
    # then what every M-step (GLM experts, Gamma shapes, gate) ascends
    model = MixtureOfExpertsRegressor(
        family=family,
        n_experts=2,
        init="random",
        gate_alpha=0.0,
        tol=0,
        max_iter=40,
        random_state=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    curve = model.log_likelihood_curve_
    assert curve.size == 40
    assert curve[-1] > curve[0] + 100
    assert np.all(np.diff(curve) >= -1e-10 * np.abs(curve[:-1]))


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_glm_experts_start_from_the_last_m_step(family, request):
    # each M-step's GLM fit starts from the last expert's coefficients
    # (scikit-learn's warm_start): the same weighted fit as from scratch, in
    # fewer Newton iterations, the last experts and the template untouched
    X, y = request.getfixturevalue(f"{family}_data")
    rng = np.random.RandomState(0)
    template = (PoissonRegressor if family == "poisson" else GammaRegressor)(
        alpha=0.0, solver="newton-cholesky", tol=1e-10
    )
    before = rng.dirichlet(np.ones(2), size=len(y))
    # the next M-step's weights: close to the last ones, as in EM
    after = 0.9 * before + 0.1 * rng.dirichlet(np.ones(2), size=len(y))
    kw = dict(is_classifier=False, y_is_1d=True)
    last = fit_experts([template] * 2, X, y[:, None], before, **kw)
    kept = [(e.coef_.copy(), e.intercept_) for e in last]
    cold = fit_experts([template] * 2, X, y[:, None], after, **kw)
    warm = fit_experts([template] * 2, X, y[:, None], after, previous=last, **kw)
    for w, c in zip(warm, cold, strict=True):
        np.testing.assert_allclose(w.coef_, c.coef_, rtol=1e-7)
        np.testing.assert_allclose(w.intercept_, c.intercept_, rtol=1e-7)
        assert w.n_iter_ < c.n_iter_
        assert w.get_params() == template.get_params()
    for e, (coef, intercept) in zip(last, kept, strict=True):
        np.testing.assert_array_equal(e.coef_, coef)
        assert e.intercept_ == intercept
    assert not template.warm_start and not hasattr(template, "coef_")


def test_gaussian_family_is_the_default_bit_for_bit():
    X, y = _draw(500, 2, "gamma")
    y = np.log(y)
    default = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    explicit = MixtureOfExpertsRegressor(
        family="gaussian", n_experts=2, random_state=0
    ).fit(X, y)
    assert type(explicit.experts_[0]) is LinearRegression
    np.testing.assert_array_equal(
        default.log_likelihood_curve_, explicit.log_likelihood_curve_
    )
    np.testing.assert_array_equal(default.noise_variance_, explicit.noise_variance_)
    assert not hasattr(explicit, "shape_")
    # the predictive methods are the Gaussian mixture's, on the same numbers
    comp = explicit.predict_components(X[:20])
    std = np.sqrt(explicit.noise_variance_)
    assert np.array_equal(comp.std, np.broadcast_to(std, comp.std.shape))
    q = [0.1, 0.5, 0.9]
    np.testing.assert_array_equal(
        explicit.predict_quantiles(X[:20], q),
        mixture_quantiles(comp.weight, comp.mean, comp.std, np.asarray(q)),
    )
    np.testing.assert_array_equal(
        explicit.predict_mode(X[:20]), mixture_modes(comp.weight, comp.mean, comp.std)
    )
    np.testing.assert_array_equal(
        explicit.sample_y(X[:20], 3, random_state=4),
        sample_mixture(comp.weight, comp.mean, comp.std, 3, np.random.RandomState(4)),
    )
    assert list(explicit.summary().columns)[-1] == "noise_std"


# -- the likelihood, against scipy.stats


def _reference_log_density(model, X, y):
    gate = model.predict_gate(X)
    means = model.predict_expert(X)
    if model.family == "poisson":
        log_p = stats.poisson.logpmf(y[:, None], means)
    else:
        a = model.shape_[None, :]
        log_p = stats.gamma.logpdf(y[:, None], a, scale=means / a)
    return logsumexp(np.log(gate) + log_p, axis=1)


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_conditional_log_likelihood_is_scipy_mixture(family, request):
    model = request.getfixturevalue(f"{family}_fit")
    X, y = request.getfixturevalue(f"{family}_data")
    ll = model.conditional_log_likelihood(X, y)
    np.testing.assert_allclose(ll, _reference_log_density(model, X, y), rtol=1e-10)
    np.testing.assert_allclose(ll.sum(), model.log_likelihood_, rtol=1e-9)


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_bic_counts_the_family_parameters(family, request):
    model = request.getfixturevalue(f"{family}_fit")
    X, y = request.getfixturevalue(f"{family}_data")
    K, d = 2, X.shape[1]
    n_shapes = K if family == "gamma" else 0
    expected = (d + 1) * (K - 1) + (d + 1) * K + n_shapes
    assert model.n_parameters() == expected
    ll = _reference_log_density(model, X, y).sum()
    np.testing.assert_allclose(
        model.bic(X, y), -2 * ll + expected * np.log(len(X)), rtol=1e-10
    )
    np.testing.assert_allclose(model.aic(X, y), -2 * ll + 2 * expected, rtol=1e-10)


def test_gamma_shape_is_the_weighted_maximum_likelihood():
    rng = np.random.RandomState(3)
    X = rng.uniform(-1, 1, size=(800, 2))
    mu = np.exp(0.5 + X @ [0.3, -0.4])
    y = rng.gamma(3.0, mu / 3.0)
    w = rng.uniform(0.5, 2.0, size=800)
    model = MixtureOfExpertsRegressor(family="gamma", n_experts=1).fit(
        X, y, sample_weight=w
    )
    glm = GammaRegressor(alpha=0.0, solver="newton-cholesky", tol=1e-10).fit(
        X, y, sample_weight=w
    )
    # the expert's Newton stops at tol=1e-6 on the half squared decrement:
    # coefficients to about 1e-6, the log-likelihood to about 1e-12 per row
    np.testing.assert_allclose(model.experts_[0].coef_, glm.coef_, rtol=2e-5)
    m = glm.predict(X)

    def neg_ll(log_a):
        a = np.exp(log_a)
        return -w @ stats.gamma.logpdf(y, a, scale=m / a)

    best = np.exp(optimize.minimize_scalar(neg_ll, bounds=(-5, 5), method="bounded").x)
    np.testing.assert_allclose(model.shape_[0], best, rtol=1e-4)
    assert model.summary()["shape"].iloc[0] == model.shape_[0]


def test_gamma_shape_solver_and_its_bounds():
    a = np.array([1e-3, 0.3, 1.0, 4.0, 250.0, 1e5])
    s = np.log(a) - digamma(a)
    np.testing.assert_allclose(gamma_shape_mle(s), a, rtol=1e-8)
    # a perfect fit, s = 0, gets the ceiling; shapes stay within the bounds
    np.testing.assert_array_equal(
        gamma_shape_mle(np.array([0.0, s[-1]]), ceiling=10.0), [10.0, 10.0]
    )


def test_gamma_interpolating_expert_stays_finite():
    # an expert that fits its rows exactly would drive its shape to infinity
    rng = np.random.RandomState(0)
    X = rng.uniform(1, 2, size=(200, 1))
    y = np.where(X[:, 0] > 1.5, np.exp(X[:, 0]), rng.gamma(2.0, 1.0, size=200))
    model = MixtureOfExpertsRegressor(
        family="gamma", n_experts=2, random_state=0, max_iter=50
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert np.all(np.isfinite(model.shape_))
    assert np.all(model.shape_ <= model._likelihood.shape_ceiling)
    assert np.isfinite(model.log_likelihood_)


# -- the predictive distribution


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_predictive_mean_std_match_monte_carlo(family, request):
    model = request.getfixturevalue(f"{family}_fit")
    X = np.array([[-1.0], [0.0], [0.3], [1.5]])
    mean, std = model.predict(X, return_std=True)
    draws = model.sample_y(X, n_samples=40_000, random_state=0)
    assert draws.shape == (4, 40_000)
    if family == "poisson":
        np.testing.assert_array_equal(draws, np.round(draws))
    else:
        assert np.all(draws > 0)
    np.testing.assert_allclose(draws.mean(axis=1), mean, rtol=0.02)
    np.testing.assert_allclose(draws.std(axis=1), std, rtol=0.03)
    # the law of total variance, by hand
    comp = model.predict_components(X)
    var = np.sum(comp.weight * (comp.std**2 + comp.mean**2), axis=1) - mean**2
    np.testing.assert_allclose(std, np.sqrt(var), rtol=1e-10)


def _reference_quantile(family, w, means, shapes, q):
    if family == "poisson":
        counts = np.arange(0, 500)
        cdf = w @ stats.poisson.cdf(counts[None, :], means[:, None])
        return counts[np.argmax(cdf >= q)]

    def cdf(x):
        return w @ stats.gamma.cdf(x, shapes, scale=means / shapes) - q

    return optimize.brentq(cdf, 1e-12, 1e4, xtol=1e-13, rtol=1e-13)


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_predictive_quantiles_and_mode_match_scipy(family, request):
    model = request.getfixturevalue(f"{family}_fit")
    X = np.array([[-1.0], [0.0], [0.2], [1.5]])
    q = np.array([0.05, 0.3, 0.5, 0.95])
    quantiles = model.predict_quantiles(X, q)
    comp = model.predict_components(X)
    shapes = getattr(model, "shape_", None)
    for i in range(len(X)):
        expected = [
            _reference_quantile(family, comp.weight[i], comp.mean[i], shapes, level)
            for level in q
        ]
        tol = 0 if family == "poisson" else 1e-9
        np.testing.assert_allclose(quantiles[i], expected, rtol=tol)
    # the mode: the highest point of the mixture density on a fine grid
    modes = model.predict_mode(X)
    for i in range(len(X)):
        if family == "poisson":
            grid = np.arange(0, 200)
            pmf = stats.poisson.pmf(grid[None, :], comp.mean[i][:, None])
            dens = comp.weight[i] @ pmf
            assert modes[i] == grid[np.argmax(dens)]
        else:
            grid = np.linspace(1e-6, 30, 300_001)
            a = shapes[:, None]
            dens = comp.weight[i] @ stats.gamma.pdf(
                grid[None, :], a, scale=comp.mean[i][:, None] / a
            )
            assert abs(modes[i] - grid[np.argmax(dens)]) < 1e-3


def test_top_k_components_of_zero_weight_give_no_nan(gamma_fit, gamma_data):
    X, _ = gamma_data
    # top_k acts at prediction: one expert per row, the other's weight 0
    model = copy.deepcopy(gamma_fit).set_params(top_k=1)
    q = model.predict_quantiles(X[:50])
    mean, std = model.predict(X[:50], return_std=True)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(std))
    assert np.all(np.isfinite(model.predict_mode(X[:50])))
    assert np.all(np.isfinite(model.sample_y(X[:50])))


# -- other experts


def test_other_experts_with_a_positive_mean(poisson_data):
    X, y = poisson_data
    for expert in [
        HistGradientBoostingRegressor(loss="poisson", max_iter=20, random_state=0),
        DecisionTreeRegressor(criterion="poisson", max_depth=3),
    ]:
        model = MixtureOfExpertsRegressor(
            expert, family="poisson", n_experts=2, max_iter=15, random_state=0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        assert np.isfinite(model.log_likelihood_)
        assert model.predict(X).min() > 0


def test_expert_with_negative_mean_is_named_and_the_fit_left_as_it_was():
    # steeply falling counts: a straight line through them goes below 0
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 4, size=(400, 1))
    y = rng.poisson(np.exp(3.0 - 1.5 * X[:, 0])).astype(float)
    model = MixtureOfExpertsRegressor(family="poisson", n_experts=2, random_state=0)
    model.fit(X, y)
    before = dict(vars(model))
    experts = [("line", LinearRegression()), ("glm", PoissonRegressor())]
    model.set_params(estimators=experts, n_experts=2)
    with pytest.raises(
        ValueError, match=r"Expert 'line' \(LinearRegression\) predicts a mean of -"
    ):
        model.fit(X, y)
    # a fit that raises leaves the fitted estimator as it was
    model.set_params(estimators=None)
    assert vars(model).keys() == before.keys()
    for key, value in before.items():
        assert vars(model)[key] is value, key


def test_poisson_zero_mean_is_poisson_zero(poisson_data):
    X, y = poisson_data
    model = MixtureOfExpertsRegressor(family="poisson", n_experts=2, random_state=0)
    model.fit(X, y)
    # an expert of mean 0 (all its mass at 0, a zero-inflation component)
    # gives positive counts probability 0; the other expert explains them
    model.experts_[1] = _Constant(0.0)
    gate = model.predict_gate(X)
    mu = model.predict_expert(X)[:, 0]
    expected = np.logaddexp(
        np.log(gate[:, 0]) + stats.poisson.logpmf(y, mu),
        np.where(y == 0, np.log(gate[:, 1]), -np.inf),
    )
    np.testing.assert_allclose(model.conditional_log_likelihood(X, y), expected)
    # a positive count that no expert can give is an error, not -inf
    model.experts_[0] = _Constant(0.0)
    with pytest.raises(
        ValueError, match=r"Every expert \('expert0', 'expert1'\) predicts a mean of 0"
    ):
        model.conditional_log_likelihood(X, y)
    zeros = model.conditional_log_likelihood(X, np.zeros(len(y)))
    np.testing.assert_allclose(zeros, 0.0, atol=1e-15)


def test_poisson_expert_of_only_zeros():
    # iris' setosa rows (label 0) as counts: the expert that takes them
    # reaches mean 0 (intercept -inf, as PoissonRegressor fits all-zero
    # targets), a zero-inflation component, and the fit goes on
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = MixtureOfExpertsRegressor(family="poisson", n_experts=3, random_state=0)
    with warnings.catch_warnings():
        # PoissonRegressor's log(0) on all-zero targets
        warnings.simplefilter("ignore", RuntimeWarning)
        model.fit(X, y.astype(float))
    intercepts = np.array([e.intercept_ for e in model.experts_])
    assert np.isneginf(intercepts).sum() == 1
    assert np.isfinite(model.log_likelihood_) and model.converged_
    zero = int(np.flatnonzero(np.isneginf(intercepts))[0])
    assert np.all(model.predict_expert(X[y == 0])[:, zero] == 0)
    assert np.all(model.predict_quantiles(X[y == 0], [0.5]) == 0)


class _Constant:
    """A fitted stand-in expert predicting one value."""

    def __init__(self, value):
        self.value = value

    def predict(self, X):
        return np.full(X.shape[0], self.value)


# -- data and paths the families refuse


def test_poisson_refuses_negative_targets(poisson_data, poisson_fit):
    X, y = poisson_data
    bad = y.copy()
    bad[[3, 7]] = -1.0
    model = MixtureOfExpertsRegressor(family="poisson", n_experts=2)
    message = r"family='poisson' needs counts, y >= 0; y has 2 negative"
    with pytest.raises(ValueError, match=message):
        model.fit(X, bad)
    with pytest.raises(ValueError, match="needs counts"):
        poisson_fit.conditional_log_likelihood(X, bad)
    with pytest.raises(ValueError, match="some positive counts"):
        model.fit(X, np.zeros(len(y)))
    # non-integer counts (frequencies) are accepted
    model.set_params(max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y + 0.5)


def test_gamma_refuses_non_positive_targets(gamma_data, gamma_fit):
    X, y = gamma_data
    for value in (0.0, -2.0):
        bad = y.copy()
        bad[5] = value
        with pytest.raises(ValueError, match=r"family='gamma' needs positive targets"):
            MixtureOfExpertsRegressor(family="gamma").fit(X, bad)
        with pytest.raises(ValueError, match="needs positive targets"):
            gamma_fit.bic(X, bad)


def test_families_take_one_target(poisson_data):
    X, y = poisson_data
    with pytest.raises(ValueError, match="one target per row"):
        MixtureOfExpertsRegressor(family="poisson").fit(X, np.c_[y, y])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"training": "gradient"}, r"training='gradient' cannot .* family='poisson'"),
        ({"device": "cuda"}, r"Array API path .* cannot fit family='poisson'"),
    ],
)
def test_unsupported_paths_are_refused(poisson_data, params, match):
    X, y = poisson_data
    model = MixtureOfExpertsRegressor(family="poisson", **params)
    with pytest.raises(ValueError, match=match) as info:
        model.fit(X, y)
    assert "family='gaussian'" in str(info.value)
    assert not hasattr(model, "experts_")


def test_partial_fit_and_dask_are_refused(poisson_data):
    X, y = poisson_data
    model = MixtureOfExpertsRegressor(family="gamma")
    assert not hasattr(model, "partial_fit")
    with pytest.raises(AttributeError) as info:
        model.partial_fit(X, y + 1)
    assert "family='gamma'" in str(info.value.__cause__)
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match=r"Dask arrays .* cannot fit family='gamma'"):
        model.fit(da.from_array(X, chunks=500), da.from_array(y + 1, chunks=500))


def test_warm_start_needs_the_same_family(poisson_data):
    X, y = poisson_data
    model = MixtureOfExpertsRegressor(
        family="poisson", n_experts=2, warm_start=True, random_state=0
    ).fit(X, y)
    before = model.log_likelihood_
    model.set_params(family="gamma")
    with pytest.raises(ValueError, match="family of the previous fit, 'poisson'"):
        model.fit(X, y + 1)
    assert model.log_likelihood_ == before
    # a fresh fit of another family replaces the scale attributes
    model.set_params(warm_start=False).fit(X, y + 1)
    assert hasattr(model, "shape_")
    model.set_params(family="gaussian").fit(X, y)
    assert hasattr(model, "noise_variance_") and not hasattr(model, "shape_")


def test_training_variants_fit_the_families(poisson_data):
    X, y = poisson_data
    for training in ("cem", "sem"):
        model = MixtureOfExpertsRegressor(
            family="poisson",
            n_experts=2,
            training=training,
            max_iter=30,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        order = _by_slope(model)
        slopes = [model.experts_[k].coef_[0] for k in order]
        np.testing.assert_allclose(slopes, COEF[:, 1], atol=0.25)


# -- compare


def test_compare_with_a_family(tmp_path, capsys):
    X, y = _draw(300, 4, "poisson")
    path = tmp_path / "counts.csv"
    pd.DataFrame({"x": X[:, 0], "count": y}).to_csv(path, index=False)
    # a family makes it regression, though counts have few distinct values
    table = compare(
        csv=path,
        target="count",
        cv=2,
        models=["MoE-linear", "MoE-tree"],
        family="poisson",
        progress=False,
    )
    assert table.attrs["family"] == "poisson"
    assert np.isfinite(table.to_numpy()).all()
    with pytest.raises(ValueError, match="needs positive targets"):
        compare(
            csv=path,
            target="count",
            task="regression",
            cv=2,
            models=["MoE-linear"],
            family="gamma",
            progress=False,
        )
    with pytest.raises(ValueError, match="classification task has none"):
        compare("iris", family="poisson", progress=False)
    argv = ["compare", "--csv", str(path), "--target", "count", "--cv", "2"]
    argv += ["--models", "MoE-linear", "--family", "poisson", "--quiet"]
    assert main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("counts.csv: 300 samples, 1 features, regression")
    assert header.endswith("; skmoe family poisson")
    with pytest.raises(SystemExit) as info:
        main(argv[:-2] + ["--family", "binomial"])
    assert info.value.code == 2


# -- scikit-learn's checks


def _expected_failed_checks(estimator):
    # every check draws its targets as the tags ask (positive_only: y
    # shifted to >= 1, single output), so each applies to these families
    return {}


@parametrize_with_checks(
    [
        MixtureOfExpertsRegressor(family="poisson", n_experts=2, random_state=0),
        MixtureOfExpertsRegressor(family="gamma", n_experts=2, random_state=0),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        # tiny check data sets leave some EM runs short of tol
        warnings.simplefilter("ignore", ConvergenceWarning)
        # their few distinct rows make an expert's weighted design singular
        # (a column constant on its rows): the unpenalised GLM's Newton solver
        # says so and finishes by L-BFGS, as PoissonRegressor(alpha=0) does
        # on the same rows. A RuntimeWarning, which this suite makes an error
        warnings.simplefilter("ignore", LinAlgWarning)
        check(estimator)
