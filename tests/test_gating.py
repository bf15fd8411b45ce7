"""The softmax gate fitted on soft targets."""

import copy

import numpy as np
from sklearn.linear_model import LogisticRegression

from skmoe import SoftmaxGate
from skmoe._gates._softmax import SoftmaxGateFit


def test_gate_on_hard_targets_equals_unpenalised_multinomial_logit():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((400, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -3.0]
    X_std = (X - [0.0, 5.0, -3.0]) / [1.0, 10.0, 0.1]
    logits = X_std @ np.array([[0, 1, -1], [0, 0.5, 1], [0, -1, 0.5]])
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    z = (p.cumsum(axis=1) < rng.uniform(size=(400, 1))).sum(axis=1)
    assert np.bincount(z).min() > 50
    gate = SoftmaxGate(alpha=0.0, max_iter=1000, tol=1e-14).fit(X, np.eye(3)[z])
    ref = LogisticRegression(C=np.inf, max_iter=10_000, tol=1e-12).fit(X, z)
    np.testing.assert_allclose(gate.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    # reference category: expert 0 has zero parameters
    assert np.all(gate.coef_[:, 0] == 0) and gate.intercept_[0] == 0


def test_gate_soft_targets_with_weights_equal_replicated_hard_targets():
    # a soft target (a, 1 - a) with weight w is the same loss as two rows
    # with hard targets and weights w * a and w * (1 - a)
    rng = np.random.RandomState(1)
    X = rng.standard_normal((100, 2))
    soft = rng.dirichlet([1, 1], size=100)
    w = rng.uniform(0.5, 2, size=100)
    a = SoftmaxGate(alpha=0.1, tol=1e-14, max_iter=500).fit(X, soft, w)
    X2 = np.vstack([X, X])
    hard = np.vstack([np.tile([1.0, 0.0], (100, 1)), np.tile([0.0, 1.0], (100, 1))])
    w2 = np.concatenate([w * soft[:, 0], w * soft[:, 1]])
    b = SoftmaxGate(alpha=0.1, tol=1e-14, max_iter=500).fit(X2, hard, w2)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-4, atol=1e-6)


def test_penalty_shrinks_and_warm_start_continues():
    rng = np.random.RandomState(2)
    X = rng.standard_normal((200, 2))
    targets = np.eye(2)[(X[:, 0] > 0).astype(int)]  # separable
    weak = SoftmaxGate(alpha=1e-3).fit(X, targets)
    strong = SoftmaxGate(alpha=10.0).fit(X, targets)
    assert np.abs(strong.coef_).sum() < np.abs(weak.coef_).sum()
    assert strong.penalty() > 0
    before = weak.coef_.copy()
    weak.set_params(max_iter=1).fit(X, targets, warm_start=True)
    assert weak.n_iter_ <= 1
    assert np.abs(weak.coef_ - before).max() < np.abs(before).max()


def test_newton_and_lbfgs_reach_the_same_gate():
    # warm fits use Newton's method; the L-BFGS path (Newton disabled by a
    # zero parameter bound) must find the same minimum
    import skmoe._gates._softmax as softmax

    rng = np.random.RandomState(3)
    X = rng.standard_normal((500, 3)) * [1.0, 5.0, 0.2]
    soft = rng.dirichlet([1, 2, 3], size=500)
    start = SoftmaxGate(alpha=0.1, max_iter=2).fit(X, soft)
    newton = SoftmaxGate(alpha=0.1, tol=1e-14, max_iter=50, warm_max_iter=None)
    newton._init_scaler(X, np.ones(500))
    newton._theta = start._theta.copy()
    lbfgs = SoftmaxGate(alpha=0.1, tol=1e-14, max_iter=500)
    lbfgs._init_scaler(X, np.ones(500))
    lbfgs._theta = start._theta.copy()
    newton.fit(X, soft, warm_start=True)
    bound = softmax.NEWTON_MAX_PARAMETERS
    softmax.NEWTON_MAX_PARAMETERS = 0
    try:
        lbfgs.fit(X, soft, warm_start=True)
    finally:
        softmax.NEWTON_MAX_PARAMETERS = bound
    assert 1 < newton.n_iter_ < lbfgs.n_iter_
    np.testing.assert_allclose(newton.coef_, lbfgs.coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(newton.intercept_, lbfgs.intercept_, atol=1e-7)


def test_newton_gate_never_increases_the_objective():
    rng = np.random.RandomState(4)
    X = rng.standard_normal((300, 2))
    targets = np.eye(2)[(X[:, 0] + 0.1 * rng.standard_normal(300) > 0).astype(int)]
    gate = SoftmaxGate(alpha=1e-3, max_iter=3).fit(X, targets)

    def objective(g):
        log_g = g.predict_log_proba(X)
        return -np.sum(targets * log_g) + g.penalty()

    values = [objective(gate)]
    for _ in range(5):
        gate.set_params(max_iter=1).fit(X, targets, warm_start=True)
        values.append(objective(gate))
    assert np.all(np.diff(values) <= 1e-9 * abs(values[0]))
    assert values[-1] < values[0]


def test_warm_max_iter_bounds_newton_steps_of_warm_fits_only():
    rng = np.random.RandomState(5)
    X = rng.standard_normal((300, 2))
    soft = rng.dirichlet([1, 1, 1], size=300)
    gate = SoftmaxGate(alpha=0.1, tol=1e-14, warm_max_iter=1).fit(X, soft)
    cold_iter = gate.n_iter_
    gate.fit(X, rng.dirichlet([1, 1, 1], size=300), warm_start=True)
    assert cold_iter > 1 and gate.n_iter_ == 1


def test_gate_fit_keeps_what_predict_log_proba_gives():
    # EM's M-step takes the gate's log-probabilities from Newton's last
    # evaluation, and starts a warm fit from the E-step's: the same fit
    # and the same values as fit followed by predict_log_proba
    rng = np.random.RandomState(6)
    X = rng.standard_normal((400, 3)) * [1.0, 4.0, 0.3] + [0.0, 2.0, -1.0]
    first, second = (rng.dirichlet([1, 1, 1, 1], size=400) for _ in range(2))
    ref = SoftmaxGate(alpha=0.1, warm_max_iter=None).fit(X, first)
    gate = SoftmaxGate(alpha=0.1, warm_max_iter=None)
    workspace = SoftmaxGateFit(X, None)
    workspace.fit(gate, first, False)
    np.testing.assert_array_equal(gate.coef_, ref.coef_)
    np.testing.assert_allclose(
        workspace.log_proba, ref.predict_log_proba(X), atol=1e-12
    )
    ref.fit(X, second, warm_start=True)
    workspace.fit(gate, second, True)
    assert gate.n_iter_ == ref.n_iter_ > 1
    np.testing.assert_allclose(gate.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        workspace.log_proba, gate.predict_log_proba(X), atol=1e-12
    )
    # the kept log-probabilities are what a warm fit starts from: wrong
    # ones (here uniform) send it elsewhere, as a wrong gradient would
    moved = SoftmaxGate(alpha=0.1, warm_max_iter=1).fit(X, first)
    kept = SoftmaxGate(alpha=0.1, warm_max_iter=1).fit(X, first)
    wrong = SoftmaxGateFit(X, None)
    wrong.remember(moved, np.full((400, 4), np.log(0.25)))
    wrong.fit(moved, second, True)
    kept.fit(X, second, warm_start=True)
    assert not np.allclose(moved.coef_, kept.coef_, rtol=1e-3)
    # values are used only at the parameters they belong to
    other = SoftmaxGateFit(X, None)
    other.remember(kept, np.full((400, 4), np.log(0.25)))
    assert other.values_for(moved) is None
    assert other.values_for(kept) is not None


def test_gate_fit_keeps_the_probabilities_and_reads_them():
    # with keep_proba the workspace keeps the probabilities beside the
    # log-probabilities; a warm fit reads them for its first gradient: the
    # same fit as from the log-probabilities alone
    rng = np.random.RandomState(7)
    X = rng.standard_normal((500, 3))
    first, second = (rng.dirichlet([1, 1, 1], size=500) for _ in range(2))
    gate = SoftmaxGate(alpha=0.1, warm_max_iter=None)
    workspace = SoftmaxGateFit(X, None)
    workspace.fit(gate, first, False, keep_proba=True)
    np.testing.assert_allclose(workspace.proba, np.exp(workspace.log_proba), rtol=1e-13)
    np.testing.assert_allclose(workspace.proba, gate.predict_proba(X), rtol=1e-12)
    ref = SoftmaxGate(alpha=0.1, warm_max_iter=None).fit(X, first)
    ref_workspace = SoftmaxGateFit(X, None)
    ref_workspace.remember(ref, workspace.log_proba.copy())
    ref_workspace.fit(ref, second, True)
    workspace.fit(gate, second, True, keep_proba=True)
    assert gate.n_iter_ == ref.n_iter_ > 1
    np.testing.assert_allclose(gate.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(workspace.log_proba, ref_workspace.log_proba, atol=1e-12)
    np.testing.assert_allclose(workspace.proba, gate.predict_proba(X), rtol=1e-12)
    # read, not recomputed: wrong probabilities (uniform) move the fit
    moved = SoftmaxGate(alpha=0.1, warm_max_iter=1)
    wrong = SoftmaxGateFit(X, None)
    wrong.fit(moved, first, False, keep_proba=True)
    kept = copy.deepcopy(moved)
    wrong.proba[...] = 1 / 3
    wrong.fit(moved, second, True, keep_proba=True)
    kept.fit(X, second, warm_start=True)
    assert not np.allclose(moved.coef_, kept.coef_, rtol=1e-3)


def test_gate_fit_starts_from_the_weighted_sums_without_a_pass(monkeypatch):
    # given the targets' weighted sums (EM takes them from the experts' Gram
    # matrices), a warm fit takes its first gradient from them and the
    # gate's own sums kept from the last call: the same fit as from a pass
    # over X, and no such pass (no evaluation with given log-probabilities)
    import skmoe._gates._softmax as softmax

    rng = np.random.RandomState(8)
    X = rng.standard_normal((600, 3)) * [1.0, 5.0, 0.2] + [3.0, -40.0, 1.0]
    sw = rng.uniform(0.5, 2.0, size=600)
    first, second = (rng.dirichlet([1, 1, 1, 1], size=600) for _ in range(2))

    def sums(resp):
        centre = X[::7].mean(axis=0)  # any centre: EM's is a subsample's mean
        weights = resp * sw[:, None]
        return centre, weights.sum(axis=0), weights.T @ (X - centre)

    ref = SoftmaxGate(alpha=0.1, warm_max_iter=1)
    ref_workspace = SoftmaxGateFit(X, sw)
    ref_workspace.fit(ref, first, False)
    ref_workspace.fit(ref, second, True)
    gate = SoftmaxGate(alpha=0.1, warm_max_iter=1)
    workspace = SoftmaxGateFit(X, sw)
    workspace.fit(gate, first, False, target_sums=sums(first))
    passes = []
    objective = softmax.gate_objective

    def counted(*args):
        passes.append(args[7])  # given
        return objective(*args)

    monkeypatch.setattr(softmax, "gate_objective", counted)
    workspace.fit(gate, second, True, target_sums=sums(second))
    assert passes == [False]  # only the trial point's full evaluation
    assert gate.n_iter_ == ref.n_iter_ == 1
    np.testing.assert_allclose(gate.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(workspace.log_proba, ref_workspace.log_proba, atol=1e-12)
    # without target sums, or with values kept at other parameters, a pass
    passes.clear()
    workspace.fit(gate, first, True)
    assert passes[0] is True
    passes.clear()
    workspace.remember(ref, ref.predict_log_proba(X))
    workspace.fit(gate, first, True, target_sums=sums(first))
    assert passes[0] is False  # not the remembered values: a full evaluation
    # wrong target sums send the fit elsewhere: they are what it reads
    moved = SoftmaxGate(alpha=0.1, warm_max_iter=1)
    moved_workspace = SoftmaxGateFit(X, sw)
    moved_workspace.fit(moved, first, False, target_sums=sums(first))
    centre, totals, centred = sums(second)
    moved_workspace.fit(moved, second, True, target_sums=(centre, totals, 0 * centred))
    assert not np.allclose(moved.coef_, ref.coef_, rtol=1e-3)


def test_a_gate_carries_no_workspace():
    # a fitted gate holds its parameters only: pickles and copies carry no
    # arrays of the rows it was fitted on
    import pickle

    rng = np.random.RandomState(9)
    X = rng.standard_normal((300, 2))
    gate = SoftmaxGate().fit(X, rng.dirichlet([1, 1, 1], size=300))
    assert all(
        not (isinstance(v, np.ndarray) and v.shape[0] == 300)
        for v in vars(gate).values()
    )
    for clone_ in (pickle.loads(pickle.dumps(gate)), copy.deepcopy(gate)):
        np.testing.assert_array_equal(clone_.predict_proba(X), gate.predict_proba(X))
