"""The matplotlib displays draw what they say (Agg backend)."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor  # noqa: E402
from skmoe.datasets import make_moe_classification, make_moe_regression  # noqa: E402
from skmoe.inspection import (  # noqa: E402
    ConvergenceDisplay,
    ExpertFitDisplay,
    GateRegionsDisplay,
)


@pytest.fixture(scope="module")
def fitted():
    X, y = make_moe_regression(n_samples=600, noise=0.2, random_state=0)
    return MixtureOfExpertsRegressor(random_state=0).fit(X, y), X, y


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_gate_regions_colour_the_argmax_expert(fitted):
    est, X, _ = fitted
    disp = GateRegionsDisplay.from_estimator(est, X, grid_resolution=30)
    regions = np.asarray(disp.surface_.get_array()).reshape(30, 30)
    np.testing.assert_array_equal(regions, disp.expert)
    # each expert owns part of the plane on this data
    assert set(np.unique(regions)) == {0, 1, 2}
    centre = np.median(X, axis=0)
    point = np.array([[disp.xx[0, 0], disp.yy[0, 0]]])
    expected = est.predict_gate(np.column_stack([point, centre[2:][None]])).argmax()
    assert regions[0, 0] == expected
    assert len(disp.scatter_.get_offsets()) == len(X)
    legend = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert legend == ["expert0", "expert1", "expert2"]
    assert disp.ax_.get_xlabel() == "x0" and disp.ax_.get_ylabel() == "x1"


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


def test_convergence_display_plots_the_curve(fitted):
    est, *_ = fitted
    disp = ConvergenceDisplay.from_estimator(est)
    np.testing.assert_allclose(disp.line_.get_ydata(), est.log_likelihood_curve_)
    np.testing.assert_array_equal(disp.line_.get_xdata(), np.arange(1, est.n_iter_ + 1))


def test_gate_regions_of_a_classifier_and_the_fit_display_refuses_it():
    X, y = make_moe_classification(n_samples=300, random_state=0)
    clf = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(X, y)
    _, ax = plt.subplots()
    disp = GateRegionsDisplay.from_estimator(clf, X, ax=ax)
    assert disp.ax_ is ax
    with pytest.raises(ValueError, match="MixtureOfExpertsRegressor"):
        ExpertFitDisplay.from_estimator(clf, X, y)
