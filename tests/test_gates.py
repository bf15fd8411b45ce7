"""Gates: the MLP gating net, gate_features, load balancing, hierarchical gates."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import check_grad, linear_sum_assignment
from sklearn.compose import make_column_transformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from skmoe import (
    HierarchicalGate,
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    SoftmaxGate,
    SoftmaxMLPGate,
)
from skmoe._gates._builder import ColumnSubsetGate
from skmoe._gates._hierarchical import tree_order
from skmoe._gates._mlp import load_balance_penalty
from skmoe.datasets import make_hme_regression, make_moe_regression


def _is_monotone(curve):
    return np.all(np.diff(curve) >= -1e-9 * abs(curve[-1]))


@pytest.fixture(scope="module")
def soft_targets():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((150, 3))
    resp = rng.dirichlet(np.ones(3), size=150)
    sw = rng.uniform(0.5, 2.0, size=150)
    return X, resp, sw


# -- the MLP gate


@pytest.mark.parametrize("hidden", [(), (5,), (4, 3)])
@pytest.mark.parametrize("load_balance", [0.0, 0.7])
def test_mlp_gate_gradient_matches_finite_differences(
    soft_targets, hidden, load_balance
):
    X, resp, sw = soft_targets
    gate = SoftmaxMLPGate(
        hidden, alpha=0.1, load_balance=load_balance, max_iter=1, random_state=0
    ).fit(X, resp, sw)
    Xs = (X - gate._mean) / gate._scale
    theta = np.random.RandomState(1).standard_normal(gate._flat.size)

    def loss(t):
        return gate._objective(t, Xs, resp, sw)[0]

    def grad(t):
        return gate._objective(t, Xs, resp, sw)[1]

    error = check_grad(loss, grad, theta, epsilon=1e-6)
    assert error < 1e-5 * np.linalg.norm(grad(theta))


def test_mlp_gate_without_hidden_layers_is_the_linear_gate(soft_targets):
    X, resp, sw = soft_targets
    # both minimise the same convex objective; tight tolerances, since their
    # solvers (L-BFGS, Newton) stop at different distances from the minimum
    mlp = SoftmaxMLPGate((), alpha=0.01, tol=1e-14, max_iter=1000).fit(X, resp, sw)
    linear = SoftmaxGate(alpha=0.01, tol=1e-14).fit(X, resp, sw)
    np.testing.assert_allclose(mlp.coef_, linear.coef_, atol=1e-6)
    np.testing.assert_allclose(mlp.intercept_, linear.intercept_, atol=1e-6)
    np.testing.assert_allclose(mlp.penalty(), linear.penalty(), rtol=1e-4)
    assert mlp.n_parameters() == (3 + 1) * 2


def test_mlp_gate_public_weights_predict_as_the_fit(soft_targets):
    X, resp, sw = soft_targets
    gate = SoftmaxMLPGate((6, 4), random_state=0).fit(X, resp, sw)
    assert [W.shape for W in gate.coefs_] == [(3, 6), (6, 4), (4, 3)]
    assert np.all(gate.coefs_[-1][:, 0] == 0) and gate.intercepts_[-1][0] == 0
    Xs = (X - gate._mean) / gate._scale
    _, logits = gate._forward(Xs, gate._unpack(gate._flat))
    expected = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(gate.predict_log_proba(X), expected, atol=1e-12)
    assert gate.n_parameters() == 4 * 6 + 7 * 4 + 5 * 2


@pytest.fixture(scope="module")
def xor_data():
    # expert 1 where x0 x1 > 0: no line separates the experts' regions
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(500, 2))
    z = (X[:, 0] * X[:, 1] > 0).astype(int)
    y = np.where(z == 1, 2.0, -2.0) + 0.1 * rng.standard_normal(500)
    return X, y, z


def _agreement(gate, z):
    label = gate.argmax(axis=1)
    return max(np.mean(label == z), np.mean(label != z))


def test_mlp_gate_fits_a_region_the_linear_gate_cannot(xor_data):
    X, y, z = xor_data
    linear = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    mlp = MixtureOfExpertsRegressor(
        n_experts=2, gate="mlp", gate_hidden_layer_sizes=(8,), random_state=0
    ).fit(X, y)
    assert _agreement(mlp.predict_gate(X), z) > 0.98
    assert _agreement(linear.predict_gate(X), z) < 0.75
    # the noise is 0.1: the XOR gate explains y, a linear one cannot
    assert mlp.log_likelihood_ / len(X) > 0.8
    assert linear.log_likelihood_ / len(X) < 0.5
    assert _is_monotone(mlp.objective_curve_)
    n_gate = 3 * 8 + 9 * 1
    assert mlp.n_parameters() == n_gate + 2 * 3 + 2


def test_mlp_gate_with_two_hidden_layers(xor_data):
    X, y, z = xor_data
    mlp = MixtureOfExpertsRegressor(
        n_experts=2, gate="mlp", gate_hidden_layer_sizes=(6, 4), random_state=0
    ).fit(X, y)
    assert _agreement(mlp.predict_gate(X), z) > 0.98
    assert [W.shape for W in mlp.gate_.coefs_] == [(2, 6), (6, 4), (4, 2)]
    assert _is_monotone(mlp.objective_curve_)


def test_bad_hidden_layer_sizes_are_refused(xor_data):
    X, y, _ = xor_data
    with pytest.raises(ValueError, match="gate_hidden_layer_sizes"):
        MixtureOfExpertsRegressor(gate="mlp", gate_hidden_layer_sizes=(4, 0)).fit(X, y)


# -- gate_features


@pytest.fixture(scope="module")
def three_columns():
    X, y = make_moe_regression(n_samples=500, n_features=3, n_experts=2, random_state=3)
    return X, y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gate_features_fit_equals_a_gate_on_those_columns(three_columns):
    X, y = three_columns

    def experts(columns):
        return make_pipeline(
            make_column_transformer(("passthrough", columns)), LinearRegression()
        )

    # the same model twice: the gate on columns 0 and 2 of X through
    # gate_features, or on all of X[:, [0, 2]]; the experts see the same
    # columns in both (random starts: k-means would see column 1 in one)
    kwargs = dict(n_experts=2, init="random", max_iter=25, random_state=0)
    subset = MixtureOfExpertsRegressor(
        experts([0, 2]), gate_features=[0, 2], **kwargs
    ).fit(X, y)
    whole = MixtureOfExpertsRegressor(experts([0, 1]), **kwargs).fit(X[:, [0, 2]], y)
    assert subset.gate_.coef_.shape == (2, 2)
    np.testing.assert_array_equal(subset.gate_.features_, [0, 2])
    np.testing.assert_allclose(subset.gate_.coef_, whole.gate_.coef_, rtol=1e-6)
    np.testing.assert_allclose(
        subset.log_likelihood_curve_, whole.log_likelihood_curve_, rtol=1e-9
    )
    np.testing.assert_allclose(
        subset.predict_gate(X), whole.predict_gate(X[:, [0, 2]]), rtol=1e-6
    )


def test_gate_features_match_a_gate_fitted_on_the_columns(soft_targets):
    X, resp, sw = soft_targets
    wrapped = ColumnSubsetGate(SoftmaxGate(), [2, 0]).fit(X, resp, sw)
    direct = SoftmaxGate().fit(X[:, [2, 0]], resp, sw)
    np.testing.assert_array_equal(wrapped.coef_, direct.coef_)
    np.testing.assert_array_equal(
        wrapped.predict_proba(X), direct.predict_proba(X[:, [2, 0]])
    )
    assert wrapped.n_parameters() == 3 * 2


def test_gate_ignores_the_columns_it_does_not_see(three_columns):
    X, y = three_columns
    moe = MixtureOfExpertsRegressor(
        n_experts=2, gate_features=[0, 1], random_state=0
    ).fit(X, y)
    full = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    X_moved = X.copy()
    X_moved[:, 2] += 5.0
    np.testing.assert_array_equal(moe.predict_gate(X), moe.predict_gate(X_moved))
    # but the experts see column 2
    assert not np.allclose(moe.predict(X), moe.predict(X_moved))
    # one gate coefficient fewer per non-reference expert
    assert full.n_parameters() - moe.n_parameters() == 1


def test_gate_features_as_indices_mask_or_names_agree(three_columns):
    X, y = three_columns
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    fits = [
        MixtureOfExpertsRegressor(n_experts=2, gate_features=gf, random_state=0)
        for gf in ([1, 2], [False, True, True], ["b", "c"])
    ]
    curves = [
        fits[0].fit(X, y).log_likelihood_curve_,
        fits[1].fit(X, y).log_likelihood_curve_,
        fits[2].fit(df, y).log_likelihood_curve_,
    ]
    np.testing.assert_array_equal(curves[0], curves[1])
    # a DataFrame's column-major copy rounds its products differently
    np.testing.assert_allclose(curves[0], curves[2], rtol=1e-12)
    np.testing.assert_allclose(
        fits[2].predict_gate(df), fits[0].predict_gate(X), rtol=1e-10
    )


@pytest.mark.parametrize(
    "gate_features, use_frame, match",
    [
        (["b", "z"], True, r"unknown column\(s\) \['z'\]"),
        (["b"], False, "X has no column names"),
        ([0, 3], False, r"index\(es\) \[3\] out of range"),
        ([True, False], False, "boolean mask has 2 entries"),
        ([False, False, False], False, "selects no column"),
        ([], False, "non-empty"),
        ([1, 1], False, "repeats a column"),
        ([0.5], False, "dtype float64"),
    ],
)
def test_bad_gate_features_are_refused(three_columns, gate_features, use_frame, match):
    X, y = three_columns
    if use_frame:
        X = pd.DataFrame(X, columns=["a", "b", "c"])
    moe = MixtureOfExpertsRegressor(n_experts=2, gate_features=gate_features)
    with pytest.raises(ValueError, match=match):
        moe.fit(X, y)


def test_gate_regions_display_follows_gate_features(three_columns):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skmoe.inspection import GateRegionsDisplay

    X, y = three_columns
    moe = MixtureOfExpertsRegressor(
        n_experts=2, gate_features=[2, 1], random_state=0
    ).fit(X, y)
    try:
        disp = GateRegionsDisplay.from_estimator(moe, X, grid_resolution=10)
        assert disp.feature_names == ("x2", "x1")
        with pytest.warns(UserWarning, match=r"does not see feature\(s\) \['x0'\]"):
            disp = GateRegionsDisplay.from_estimator(
                moe, X, features=(0, 1), grid_resolution=10
            )
        # constant along the unseen axis
        assert np.all(disp.expert == disp.expert[:, :1])
    finally:
        plt.close("all")


# -- load balancing


def test_load_balance_penalty_is_zero_at_uniform_usage():
    gate = np.array([[0.7, 0.3], [0.3, 0.7]])
    penalty, _ = load_balance_penalty(gate, np.ones(2), 3.0)
    assert abs(penalty) < 1e-12
    gate = np.array([[0.9, 0.1], [0.9, 0.1]])
    penalty, _ = load_balance_penalty(gate, np.ones(2), 3.0)
    # 3 * 2 * KL(uniform || (0.9, 0.1))
    expected = 3.0 * 2 * (0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1))
    np.testing.assert_allclose(penalty, expected)


def test_load_balance_revives_a_collapsing_expert():
    X, y = make_moe_regression(n_samples=500, n_experts=2, random_state=0)
    plain = MixtureOfExpertsRegressor(n_experts=4, random_state=0).fit(X, y)
    balanced = MixtureOfExpertsRegressor(
        n_experts=4, gate_load_balance=1.0, random_state=0
    ).fit(X, y)
    assert plain.predict_gate(X).mean(axis=0).min() < 0.05  # one expert starves
    assert balanced.predict_gate(X).mean(axis=0).min() > 0.2
    # four experts on two-expert data: balancing costs little likelihood
    assert (plain.log_likelihood_ - balanced.log_likelihood_) / len(X) < 0.02


def test_load_balance_equalises_usage_as_its_weight_grows():
    X, y = make_moe_regression(n_samples=600, n_experts=3, random_state=1)
    divergences = []
    for weight in [0.0, 1.0, 10.0, 100.0]:
        moe = MixtureOfExpertsRegressor(
            n_experts=3, gate_load_balance=weight, random_state=0
        ).fit(X, y)
        usage = moe.predict_gate(X).mean(axis=0)
        divergences.append(-np.log(3) - np.mean(np.log(usage)))
        # EM stays monotone in the penalised objective, penalty included
        assert _is_monotone(moe.objective_curve_)
        if weight > 0:
            np.testing.assert_allclose(
                moe.objective_curve_[-1],
                moe.log_likelihood_ - moe.gate_.penalty(),
            )
            assert moe.gate_.penalty() > 0
    assert divergences[0] > 0.01
    assert np.all(np.diff(divergences) < 0)
    assert divergences[-1] < 1e-4


def test_load_balance_with_an_mlp_gate_in_a_classifier():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((300, 2))
    y = (X[:, 0] + 0.5 * rng.standard_normal(300) > 0).astype(int)
    clf = MixtureOfExpertsClassifier(
        n_experts=3,
        gate="mlp",
        gate_hidden_layer_sizes=(4,),
        gate_load_balance=5.0,
        tol=1e-4,
        random_state=0,
    ).fit(X, y)
    assert isinstance(clf.gate_, SoftmaxMLPGate) and clf.gate_.load_balance == 5.0
    assert clf.predict_gate(X).mean(axis=0).min() > 0.25
    assert clf.score(X, y) > 0.8


# -- hierarchical mixtures of experts


@pytest.fixture(scope="module")
def tree_data():
    return make_hme_regression(
        n_samples=1000, depth=2, branching=2, return_params=True, random_state=0
    )


@pytest.fixture(scope="module")
def hme(tree_data):
    X, y, _ = tree_data
    return MixtureOfExpertsRegressor(
        n_experts=4, gate="hierarchical", n_init=4, random_state=0
    ).fit(X, y)


def test_make_hme_regression_leaf_gate_is_the_product_along_the_path(tree_data):
    X, y, p = tree_data
    root = X @ p.node_coef[0][0] + p.node_intercept[0][0]
    root = np.exp(root) / np.exp(root).sum(axis=1, keepdims=True)
    child = X @ p.node_coef[1][1] + p.node_intercept[1][1]
    child = np.exp(child) / np.exp(child).sum(axis=1, keepdims=True)
    # leaf 3 = branch 1 at the root, then branch 1 at node (1, 1)
    np.testing.assert_allclose(p.leaf_gate[:, 3], root[:, 1] * child[:, 1])
    np.testing.assert_allclose(p.leaf_gate.sum(axis=1), 1.0)


def test_hme_recovers_a_two_level_tree(tree_data, hme):
    X, y, p = tree_data
    n = len(X)
    # the fitted log-likelihood is that of the true tree, within 0.03 nats
    # per row (above it by the fitted parameters' excess)
    assert abs(hme.log_likelihood_ - p.log_likelihood) / n < 0.03
    labels = hme.responsibilities(X, y).argmax(axis=1)
    confusion = np.zeros((4, 4))
    np.add.at(confusion, (labels, p.expert), 1)
    rows, cols = linear_sum_assignment(-confusion)
    assert confusion[rows, cols].sum() / n > 0.95
    # the matching respects the tree: siblings map to siblings
    assert {frozenset(cols[:2] // 2), frozenset(cols[2:] // 2)} == {
        frozenset({0}),
        frozenset({1}),
    }
    assert _is_monotone(hme.objective_curve_)


def test_hme_predict_gate_is_the_product_of_branch_probabilities(tree_data, hme):
    X, _, _ = tree_data
    gate = hme.gate_
    assert isinstance(gate, HierarchicalGate)
    root = gate.nodes_[0][0].predict_proba(X)
    for leaf in range(4):
        branch = gate.nodes_[1][leaf // 2].predict_proba(X)[:, leaf % 2]
        np.testing.assert_allclose(
            hme.predict_gate(X)[:, leaf], root[:, leaf // 2] * branch, rtol=1e-12
        )
    # three nodes of (2 + 1) * (2 - 1) parameters; four linear experts
    assert hme.n_parameters() == 3 * 3 + 4 * 3 + 4


def test_hme_node_targets_are_posterior_branch_probabilities(soft_targets):
    X, _, sw = soft_targets
    resp = np.random.RandomState(2).dirichlet(np.ones(4), size=len(X))
    gate = HierarchicalGate(depth=2, branching=2, alpha=0.01).fit(X, resp, sw)
    # the root sees the mass below each child, each row with its weight
    root = SoftmaxGate(alpha=0.01).fit(
        X, np.c_[resp[:, :2].sum(1), resp[:, 2:].sum(1)], sw
    )
    np.testing.assert_allclose(gate.nodes_[0][0].coef_, root.coef_, rtol=1e-6)
    # node (1, 1): its children's share of the mass reaching it, weighted by it
    mass = resp[:, 2:].sum(axis=1)
    node = SoftmaxGate(alpha=0.01).fit(X, resp[:, 2:] / mass[:, None], sw * mass)
    np.testing.assert_allclose(gate.nodes_[1][1].coef_, node.coef_, rtol=1e-6)
    np.testing.assert_allclose(
        gate.penalty(),
        sum(g.penalty() for level in gate.nodes_ for g in level),
    )


def test_hme_with_three_way_branching_and_gate_features():
    X, y, p = make_hme_regression(
        n_samples=600,
        n_features=3,
        depth=1,
        branching=3,
        return_params=True,
        random_state=1,
    )
    moe = MixtureOfExpertsRegressor(
        n_experts=3,
        gate="hierarchical",
        gate_depth=1,
        gate_branching=3,
        gate_features=[0, 1, 2],
        # the k-means start and the first random restart both end 0.73 nats
        # per row short of the truth here (as the flat gate does from k-means)
        n_init=3,
        random_state=0,
    ).fit(X, y)
    # a one-level tree is the flat softmax gate
    assert abs(moe.log_likelihood_ - p.log_likelihood) / len(X) < 0.03
    assert moe.n_parameters() == 4 * 2 + 3 * 4 + 3


def test_hme_needs_branching_to_the_depth_experts(tree_data):
    X, y, _ = tree_data
    moe = MixtureOfExpertsRegressor(n_experts=3, gate="hierarchical")
    with pytest.raises(ValueError, match="has 4 leaves.*there are 3 experts"):
        moe.fit(X, y)
    moe = MixtureOfExpertsRegressor(
        n_experts=4, gate="hierarchical", gate_load_balance=1.0
    )
    with pytest.raises(ValueError, match="gate_load_balance is not available"):
        moe.fit(X, y)


def test_tree_order_puts_neighbouring_clusters_under_one_node():
    centres = np.array([[0.0, 0], [10, 0], [0.5, 0], [10.5, 0]])
    order = tree_order(centres, 2)
    assert {frozenset(order[:2]), frozenset(order[2:])} == {
        frozenset({0, 2}),
        frozenset({1, 3}),
    }


def test_hme_classifier_fits(tree_data):
    X = tree_data[0][:400]
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MixtureOfExpertsClassifier(
            n_experts=4, gate="hierarchical", max_iter=40, random_state=0
        ).fit(X, y)
    np.testing.assert_allclose(clf.predict_gate(X).sum(axis=1), 1.0)
    assert clf.score(X, y) > 0.9


def test_newton_at_tol_zero_stops_at_round_off():
    # at tol=0 a Newton step whose predicted gain is below the loss's
    # round-off cannot pass the Armijo test; the solver must stop there
    # rather than take max_iter steps that each halve to nothing (it took
    # 100 steps and 196 evaluations here)
    from skmoe._gates._solvers import newton_minimize

    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 6))
    labels = (rng.random(200) < 0.5).astype(float)
    evaluations = []

    def objective(theta, first):
        evaluations.append(theta)
        z = A @ theta
        loss = float(np.sum(np.logaddexp(0, z) - labels * z))
        return loss, A.T @ (1 / (1 + np.exp(-z)) - labels)

    def hessian_solver(theta):
        s = 1 / (1 + np.exp(-(A @ theta)))
        H = A.T @ (A * (s * (1 - s))[:, None])
        return lambda g: np.linalg.solve(H, g)

    theta, n_iter, ok = newton_minimize(
        objective, hessian_solver, np.zeros(6), max_iter=100, tol=0.0
    )
    assert ok
    s = 1 / (1 + np.exp(-(A @ theta)))
    assert np.max(np.abs(A.T @ (s - labels))) < 1e-7
    assert n_iter < 10
    assert len(evaluations) < 15
