"""The matplotlib displays draw what they say (Agg backend)."""

import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from cycler import cycler  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import (  # noqa: E402
    OneHotEncoder,
    PolynomialFeatures,
    StandardScaler,
)

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor  # noqa: E402
from skmoe.datasets import make_moe_classification, make_moe_regression  # noqa: E402
from skmoe.inspection import (  # noqa: E402
    ConvergenceDisplay,
    ExpertFitDisplay,
    GateRegionsDisplay,
)

NAMES = ["age", "bmi", "bp", "s5"]


@pytest.fixture(scope="module")
def fitted():
    X, y = make_moe_regression(n_samples=600, noise=0.2, random_state=0)
    return MixtureOfExpertsRegressor(random_state=0).fit(X, y), X, y


@pytest.fixture(scope="module")
def data4():
    # four features, on scales a StandardScaler changes
    X, y = make_moe_regression(n_samples=400, n_features=4, random_state=0)
    X = X * np.array([10.0, 2.0, 0.5, 1.0]) + np.array([50.0, -3.0, 0.0, 7.0])
    return X, y


@pytest.fixture(scope="module")
def fitted_frame(data4):
    X, y = data4
    frame = pd.DataFrame(X, columns=NAMES)
    est = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(frame, y)
    return est, frame, y


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_gate_regions_colour_the_argmax_expert(fitted):
    est, X, _ = fitted
    disp = GateRegionsDisplay.from_estimator(est, X, grid_resolution=30)
    regions = np.asarray(disp.surface_.get_array()).reshape(30, 30)
    np.testing.assert_array_equal(regions, disp.expert)
    # each expert owns part of the plane on this data
    assert set(np.unique(regions)) == {0, 1, 2}
    point = np.array([[disp.xx[0, 0], disp.yy[0, 0]]])
    assert regions[0, 0] == est.predict_gate(point).argmax()
    assert len(disp.scatter_.get_offsets()) == len(X)
    legend = _legend_texts(disp.ax_)
    assert legend[:3] == ["expert0", "expert1", "expert2"]
    assert disp.ax_.get_xlabel() == "x0" and disp.ax_.get_ylabel() == "x1"


def test_gate_regions_hold_the_other_features_at_their_medians(data4):
    X, y = data4
    est = MixtureOfExpertsRegressor(random_state=0).fit(X, y)
    disp = GateRegionsDisplay.from_estimator(est, X, (0, 2), grid_resolution=20)
    centre = np.median(X, axis=0)
    rows = np.column_stack(
        [
            disp.xx.ravel(),
            np.full(400, centre[1]),
            disp.yy.ravel(),
            np.full(400, centre[3]),
        ]
    )
    gate = est.predict_gate(rows)
    np.testing.assert_array_equal(disp.expert.ravel(), gate.argmax(axis=1))
    np.testing.assert_allclose(disp.gate_max.ravel(), gate.max(axis=1))
    assert disp.fixed_values == pytest.approx({"x1": centre[1], "x3": centre[3]})
    title = disp.ax_.get_title()
    assert title.startswith("Gate: most trusted expert")
    assert f"x1={centre[1]:.3g}" in title and f"x3={centre[3]:.3g}" in title


def test_gate_regions_show_the_gate_confidence(fitted):
    est, X, _ = fitted
    disp = GateRegionsDisplay.from_estimator(est, X, grid_resolution=40)
    assert disp.confidence_ is not None
    levels = np.asarray(disp.confidence_.levels)
    # contours of the largest gate probability, where it crosses the levels
    assert len(levels) >= 1
    assert np.all(levels > 1 / 3)
    assert np.all((levels > disp.gate_max.min()) & (levels < disp.gate_max.max()))
    assert disp.confidence_ in disp.ax_.collections or any(
        c in disp.ax_.collections for c in getattr(disp.confidence_, "collections", [])
    )
    assert "largest gate prob." in _legend_texts(disp.ax_)
    assert disp.ax_.get_legend().get_title().get_text() == "most trusted expert"


def test_expert_fit_draws_each_expert_and_the_density(fitted):
    est, X, y = fitted
    disp = ExpertFitDisplay.from_estimator(est, X, y, feature=1, grid_resolution=50)
    assert len(disp.lines_) == 3
    for k, line in enumerate(disp.lines_):
        np.testing.assert_allclose(line.get_ydata(), disp.expert_means[:, k])
    np.testing.assert_allclose(disp.lines_[0].get_xdata(), disp.grid)
    density = np.asarray(disp.density_.get_array()).reshape(50, 50)
    # the density integrates to about one along y at each x
    dy = disp.y_grid[1] - disp.y_grid[0]
    mass = density.sum(axis=0) * dy
    assert np.all(mass > 0.9) and np.all(mass < 1.05)
    assert disp.ax_.get_xlabel() == "x1"
    centre = np.median(X, axis=0)
    title = disp.ax_.get_title()
    assert title.startswith("Experts' fits along x1")
    assert f"others at their medians: x0={centre[0]:.3g}" in title


def test_expert_fit_points_share_no_colour_with_an_expert(fitted):
    est, X, y = fitted
    disp = ExpertFitDisplay.from_estimator(est, X, y, grid_resolution=20)
    point = tuple(disp.scatter_.get_facecolor()[0][:3])
    lines = [to_rgb(line.get_color()) for line in disp.lines_]
    assert len(set(lines)) == 3
    assert all(not np.allclose(point, c) for c in lines)
    # the experts keep their colours across displays
    gate = GateRegionsDisplay.from_estimator(est, X, grid_resolution=10)
    regions = [tuple(c[:3]) for c in gate.surface_.get_cmap().colors]
    np.testing.assert_allclose(regions, lines)


def test_points_avoid_black_when_an_expert_is_black(fitted):
    est, X, y = fitted
    with plt.rc_context({"axes.prop_cycle": cycler(color=["k", "r", "b"])}):
        disp = ExpertFitDisplay.from_estimator(est, X, y, grid_resolution=20)
        gate = GateRegionsDisplay.from_estimator(est, X, grid_resolution=10)
    assert to_rgb(disp.lines_[0].get_color()) == (0.0, 0.0, 0.0)
    for scatter in (disp.scatter_, gate.scatter_):
        point = scatter.get_facecolor()[0][:3]
        assert not np.allclose(point, 0.0)
        for line in disp.lines_:
            assert not np.allclose(point, to_rgb(line.get_color()))


def test_convergence_display_plots_the_curve(fitted):
    est, *_ = fitted
    disp = ConvergenceDisplay.from_estimator(est)
    np.testing.assert_allclose(disp.line_.get_ydata(), est.log_likelihood_curve_)
    np.testing.assert_array_equal(disp.line_.get_xdata(), np.arange(1, est.n_iter_ + 1))
    assert disp.ax_.get_title() == "EM log-likelihood per iteration"


def test_gate_regions_of_a_classifier_and_the_fit_display_refuses_it():
    X, y = make_moe_classification(n_samples=300, random_state=0)
    clf = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(X, y)
    _, ax = plt.subplots()
    disp = GateRegionsDisplay.from_estimator(clf, X, ax=ax)
    assert disp.ax_ is ax
    with pytest.raises(ValueError, match="MixtureOfExpertsRegressor"):
        ExpertFitDisplay.from_estimator(clf, X, y)


# Pipelines -----------------------------------------------------------------


def test_pipeline_draws_the_gate_regions_of_the_bare_model(data4):
    X, y = data4
    pipe = make_pipeline(StandardScaler(), MixtureOfExpertsRegressor(random_state=0))
    pipe.fit(X, y)
    X_t = StandardScaler().fit_transform(X)
    bare = MixtureOfExpertsRegressor(random_state=0).fit(X_t, y)
    np.testing.assert_allclose(pipe.predict(X), bare.predict(X_t))

    disp = GateRegionsDisplay.from_estimator(pipe, X, (1, 3), grid_resolution=25)
    ref = GateRegionsDisplay.from_estimator(bare, X_t, (1, 3), grid_resolution=25)
    np.testing.assert_array_equal(disp.expert, ref.expert)
    np.testing.assert_allclose(disp.gate_max, ref.gate_max, rtol=1e-10)
    # the axes are in the user's units, not the scaler's
    scaler = pipe[0]
    np.testing.assert_allclose(
        (disp.xx - scaler.mean_[1]) / scaler.scale_[1], ref.xx, atol=1e-10
    )
    np.testing.assert_allclose(
        (disp.yy - scaler.mean_[3]) / scaler.scale_[3], ref.yy, atol=1e-10
    )
    np.testing.assert_allclose(disp.scatter_.get_offsets(), X[:, [1, 3]])
    assert disp.ax_.get_xlabel() == "x1" and disp.ax_.get_ylabel() == "x3"


def test_pipeline_expert_fit_and_convergence(data4):
    X, y = data4
    pipe = make_pipeline(StandardScaler(), MixtureOfExpertsRegressor(random_state=0))
    pipe.fit(X, y)
    disp = ExpertFitDisplay.from_estimator(pipe, X, y, feature=2, grid_resolution=30)
    rows = np.tile(np.median(X, axis=0), (30, 1))
    rows[:, 2] = disp.grid
    comp = pipe[-1].predict_components(pipe[:-1].transform(rows))
    np.testing.assert_allclose(disp.expert_means, comp.mean)
    assert disp.grid.min() < X[:, 2].min() and disp.grid.max() > X[:, 2].max()
    np.testing.assert_allclose(disp.x, X[:, 2])
    curve = ConvergenceDisplay.from_estimator(pipe)
    np.testing.assert_allclose(curve.line_.get_ydata(), pipe[-1].log_likelihood_curve_)


def test_pipeline_that_changes_the_columns_is_gridded_in_its_input(data4):
    X, y = data4
    X = X[:, :2]
    pipe = make_pipeline(
        PolynomialFeatures(2, include_bias=False),
        StandardScaler(),
        MixtureOfExpertsRegressor(n_experts=2, random_state=0),
    ).fit(X, y)
    disp = GateRegionsDisplay.from_estimator(pipe, X, grid_resolution=15)
    rows = np.column_stack([disp.xx.ravel(), disp.yy.ravel()])
    gate = pipe[-1].predict_gate(pipe[:-1].transform(rows))
    np.testing.assert_array_equal(disp.expert.ravel(), gate.argmax(axis=1))
    assert disp.ax_.get_xlabel() == "x0" and disp.ax_.get_ylabel() == "x1"


def test_pipeline_keeps_the_gate_features_of_a_one_to_one_step(data4):
    X, y = data4
    moe = MixtureOfExpertsRegressor(gate_features=[2, 3], random_state=0)
    pipe = make_pipeline(StandardScaler(), moe).fit(X, y)
    disp = GateRegionsDisplay.from_estimator(pipe, X, grid_resolution=10)
    assert disp.feature_names == ("x2", "x3")
    with pytest.warns(UserWarning, match="does not see"):
        GateRegionsDisplay.from_estimator(pipe, X, (0, 2), grid_resolution=10)


def test_pipeline_on_non_numeric_input_plots_the_transformed_space(data4):
    X, y = data4
    frame = pd.DataFrame(X[:, :2], columns=["a", "b"])
    frame["site"] = np.where(X[:, 2] > 0, "north", "south")
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(sparse_output=False), ["site"])],
        remainder="passthrough",
    )
    moe = MixtureOfExpertsRegressor(n_experts=2, random_state=0)
    pipe = make_pipeline(pre, moe).fit(frame, y)
    disp = GateRegionsDisplay.from_estimator(
        pipe, frame, ("remainder__a", "remainder__b"), grid_resolution=10
    )
    assert disp.ax_.get_xlabel() == "remainder__a (after columntransformer)"
    assert disp.ax_.get_ylabel() == "remainder__b (after columntransformer)"
    np.testing.assert_allclose(disp.scatter_.get_offsets(), X[:, :2])


@pytest.mark.parametrize(
    "estimator, got",
    [
        (LinearRegression(), "got LinearRegression"),
        (
            make_pipeline(StandardScaler(), LinearRegression()),
            "Pipeline whose last step is LinearRegression",
        ),
        (make_pipeline(StandardScaler(), "passthrough"), "last step is 'passthrough'"),
    ],
)
def test_other_estimators_get_a_type_error(data4, estimator, got):
    X, y = data4
    estimator.fit(X, y)
    for call in (
        lambda: GateRegionsDisplay.from_estimator(estimator, X),
        lambda: ExpertFitDisplay.from_estimator(estimator, X, y),
        lambda: ConvergenceDisplay.from_estimator(estimator),
    ):
        with pytest.raises(TypeError, match=got):
            call()


# Feature names ----------------------------------------------------------------


def test_no_feature_name_warning_with_a_dataframe_fitted_model(fitted_frame):
    est, frame, y = fitted_frame
    pipe = make_pipeline(StandardScaler(), MixtureOfExpertsRegressor(random_state=0))
    pipe.fit(frame, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for model in (est, pipe):
            GateRegionsDisplay.from_estimator(model, frame, grid_resolution=10)
            ExpertFitDisplay.from_estimator(model, frame, y, grid_resolution=10)
            ConvergenceDisplay.from_estimator(model)
            # the arrays of a DataFrame are as good as the frame
            GateRegionsDisplay.from_estimator(
                model, frame.to_numpy(), grid_resolution=10
            )


def test_feature_names_select_the_same_columns_as_indices(fitted_frame):
    est, frame, y = fitted_frame
    by_name = GateRegionsDisplay.from_estimator(
        est, frame, ("bmi", "s5"), grid_resolution=15
    )
    by_index = GateRegionsDisplay.from_estimator(est, frame, (1, 3), grid_resolution=15)
    np.testing.assert_array_equal(by_name.expert, by_index.expert)
    np.testing.assert_allclose(by_name.xx, by_index.xx)
    np.testing.assert_allclose(by_name.X, frame[["bmi", "s5"]].to_numpy())
    assert by_name.ax_.get_xlabel() == "bmi" and by_name.ax_.get_ylabel() == "s5"
    assert set(by_name.fixed_values) == {"age", "bp"}
    title = by_name.ax_.get_title()
    assert f"age={frame['age'].median():.3g}" in title and "bp=" in title

    fit_name = ExpertFitDisplay.from_estimator(
        est, frame, y, feature="bp", grid_resolution=15
    )
    fit_index = ExpertFitDisplay.from_estimator(
        est, frame, y, feature=2, grid_resolution=15
    )
    np.testing.assert_allclose(fit_name.expert_means, fit_index.expert_means)
    np.testing.assert_allclose(fit_name.x, frame["bp"])
    assert fit_name.ax_.get_xlabel() == "bp"
    assert fit_name.ax_.get_title().startswith("Experts' fits along bp\n")
    assert "age=" in fit_name.ax_.get_title() and "s5=" in fit_name.ax_.get_title()
    # a negative index counts from the end, as before
    last = ExpertFitDisplay.from_estimator(est, frame, y, feature=-1, grid_resolution=5)
    assert last.feature_name == "s5"


@pytest.mark.parametrize(
    "features, match",
    [
        (("bmi", "glucose"), r"unknown feature 'glucose'.*'age', 'bmi', 'bp', 's5'"),
        ((1, 4), r"feature index 4 is out of range; valid are integer indices 0 to 3"),
        (("bmi", 1), "two different features"),
        (("bmi",), "pair"),
        ("bmi", "pair"),
        ((0.5, 1), "neither a feature index nor a feature name"),
    ],
)
def test_bad_gate_features_raise_a_value_error(fitted_frame, features, match):
    est, frame, _ = fitted_frame
    with pytest.raises(ValueError, match=match):
        GateRegionsDisplay.from_estimator(est, frame, features, grid_resolution=5)


def test_bad_expert_fit_feature_raises_a_value_error(fitted_frame, fitted):
    est, frame, y = fitted_frame
    with pytest.raises(ValueError, match="unknown feature 'glucose'.*'s5'"):
        ExpertFitDisplay.from_estimator(est, frame, y, feature="glucose")
    with pytest.raises(ValueError, match="feature index -5 is out of range"):
        ExpertFitDisplay.from_estimator(est, frame, y, feature=-5)
    bare, X, y = fitted
    with pytest.raises(ValueError, match="'x0' is a feature name.*without feature"):
        ExpertFitDisplay.from_estimator(bare, X, y, feature="x0")


def test_reordered_dataframe_columns_are_refused(fitted_frame):
    est, frame, _ = fitted_frame
    with pytest.raises(ValueError, match="same order"):
        GateRegionsDisplay.from_estimator(est, frame[NAMES[::-1]], grid_resolution=5)


def test_many_held_features_are_abbreviated_in_the_title():
    X, y = make_moe_regression(n_samples=300, n_features=8, random_state=0)
    est = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    disp = ExpertFitDisplay.from_estimator(est, X, y, grid_resolution=10)
    title = disp.ax_.get_title()
    assert "x1=" in title and "x4=" in title and "x5=" not in title
    assert "(+3 more)" in title
    assert len(disp.fixed_values) == 7


def test_expert_fit_display_draws_a_poisson_mixture_density():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skmoe.inspection import ExpertFitDisplay

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 1))
    y = rng.poisson(np.exp(np.where(X[:, 0] > 0, 1.5, 0.2))).astype(float)
    est = MixtureOfExpertsRegressor(n_experts=2, family="poisson", random_state=0)
    est.fit(X, y)
    try:
        disp = ExpertFitDisplay.from_estimator(est, X, y, grid_resolution=20)
        # a count density: no mass drawn below zero, and the model's own
        assert disp.y_grid.min() >= 0
        i, j = 5, 7
        expected = np.exp(
            est.conditional_log_likelihood(disp.grid[[i], None], disp.y_grid[[j]])
        )
        np.testing.assert_allclose(disp.density[j, i], expected[0], rtol=1e-10)
    finally:
        plt.close("all")
