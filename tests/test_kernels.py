"""Each numba kernel against its plain NumPy reference."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.cluster import KMeans

from skmoe import _kernels as kern


@pytest.fixture(params=[50, 30_000], ids=["serial", "parallel"])
def n_rows(request):
    assert (request.param >= kern._PARALLEL_MIN_ROWS) == (request.param > 1000)
    return request.param


def test_log_softmax_matches_numpy(n_rows):
    rng = np.random.RandomState(0)
    logits = 30 * rng.standard_normal((n_rows, 5))
    out = kern.log_softmax_numba(logits)
    np.testing.assert_allclose(
        out, kern.log_softmax_numpy(logits), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-12)


def test_gaussian_log_prob_matches_numpy(n_rows):
    rng = np.random.RandomState(1)
    Y = rng.standard_normal((n_rows, 2))
    means = rng.standard_normal((n_rows, 4, 2))
    variances = rng.uniform(0.01, 3.0, size=(4, 2))
    np.testing.assert_allclose(
        kern.gaussian_log_prob_numba(Y, means, variances),
        kern.gaussian_log_prob_numpy(Y, means, variances),
        rtol=1e-12,
    )


def test_gaussian_log_prob_is_the_normal_density():
    from scipy.stats import norm

    rng = np.random.RandomState(2)
    Y = rng.standard_normal((20, 1))
    means = rng.standard_normal((20, 3, 1))
    variances = np.array([[0.5], [1.0], [2.0]])
    expected = norm.logpdf(Y, loc=means[:, :, 0], scale=np.sqrt(variances[:, 0]))
    np.testing.assert_allclose(
        kern.gaussian_log_prob_numba(Y, means, variances), expected, rtol=1e-12
    )


def test_responsibilities_match_numpy(n_rows):
    rng = np.random.RandomState(3)
    log_gate = kern.log_softmax_numpy(rng.standard_normal((n_rows, 3)))
    log_prob = 50 * rng.standard_normal((n_rows, 3))
    resp, row_ll = kern.responsibilities_numba(log_gate, log_prob)
    resp_ref, row_ll_ref = kern.responsibilities_numpy(log_gate, log_prob)
    np.testing.assert_allclose(resp, resp_ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(row_ll, row_ll_ref, rtol=1e-12)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)


def test_responsibilities_of_unexplained_row_are_uniform_not_nan():
    log_gate = np.log(np.full((2, 3), 1 / 3))
    log_prob = np.array([[-np.inf] * 3, [0.0, -1.0, -2.0]])
    for impl in (kern.responsibilities_numba, kern.responsibilities_numpy):
        resp, row_ll = impl(log_gate, log_prob)
        np.testing.assert_allclose(resp[0], 1 / 3)
        assert row_ll[0] == -np.inf and np.isfinite(row_ll[1])


def test_gaussian_responsibilities_match_numpy(n_rows):
    rng = np.random.RandomState(13)
    log_gate = kern.log_softmax_numpy(3 * rng.standard_normal((n_rows, 4)))
    Y = rng.standard_normal((n_rows, 2))
    means = 5 * rng.standard_normal((n_rows, 4, 2))
    variances = rng.uniform(0.001, 3.0, size=(4, 2))
    resp, row_ll = kern.gaussian_responsibilities_numba(log_gate, Y, means, variances)
    resp_ref, row_ll_ref = kern.gaussian_responsibilities_numpy(
        log_gate, Y, means, variances
    )
    np.testing.assert_allclose(resp, resp_ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(row_ll, row_ll_ref, rtol=1e-12)
    # the fused pass is the two kernels one after the other
    two_pass = kern.responsibilities_numba(
        log_gate, kern.gaussian_log_prob_numba(Y, means, variances)
    )
    np.testing.assert_array_equal(resp, two_pass[0])
    np.testing.assert_array_equal(row_ll, two_pass[1])


def test_gaussian_responsibilities_of_unexplained_row_are_uniform():
    # a gate that gives every expert zero weight on the first row
    log_gate = np.array([[-np.inf] * 3, np.log([0.2, 0.3, 0.5])])
    Y = np.zeros((2, 1))
    means = np.ones((2, 3, 1))
    variances = np.ones((3, 1))
    for impl in (
        kern.gaussian_responsibilities_numba,
        kern.gaussian_responsibilities_numpy,
    ):
        resp, row_ll = impl(log_gate, Y, means, variances)
        np.testing.assert_allclose(resp[0], 1 / 3)
        assert row_ll[0] == -np.inf and np.isfinite(row_ll[1])


def test_gate_loss_matches_numpy(n_rows):
    rng = np.random.RandomState(4)
    logits = 5 * rng.standard_normal((n_rows, 4))
    targets = rng.dirichlet(np.ones(4), size=n_rows)
    w = rng.uniform(0, 2, size=n_rows)
    loss, grad = kern.gate_loss_numba(logits, targets, w)
    loss_ref, grad_ref = kern.gate_loss_numpy(logits, targets, w)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-10)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-10, atol=1e-14)


def test_gate_loss_gradient_is_the_derivative():
    rng = np.random.RandomState(5)
    logits = rng.standard_normal((7, 3))
    targets = rng.dirichlet(np.ones(3), size=7)
    w = rng.uniform(0.5, 2, size=7)
    _, grad = kern.gate_loss_numba(logits, targets, w)
    eps = 1e-6
    for i, k in [(0, 0), (3, 2), (6, 1)]:
        step = np.zeros_like(logits)
        step[i, k] = eps
        up = kern.gate_loss_numba(logits + step, targets, w)[0]
        down = kern.gate_loss_numba(logits - step, targets, w)[0]
        assert abs((up - down) / (2 * eps) - grad[i, k]) < 1e-6


def _gate_problem(n_rows, d=4, K=4, seed=6):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n_rows, d)) * rng.uniform(0.1, 10, d) + 3.0
    mean, scale = X.mean(axis=0), X.std(axis=0)
    theta = rng.standard_normal((d + 1, K - 1))
    targets = rng.dirichlet(np.ones(K), size=n_rows)
    w = rng.uniform(0, 2, size=n_rows)
    return X, mean, scale, theta, targets, w


def test_gate_objective_matches_numpy(n_rows):
    X, mean, scale, theta, targets, w = _gate_problem(n_rows)
    loss, grad = kern.gate_objective_numba(X, mean, scale, theta, targets, w)
    loss_ref, grad_ref = kern.gate_objective_numpy(X, mean, scale, theta, targets, w)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-10)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-9, atol=1e-9)


def test_gate_objective_log_proba_out_and_given(n_rows):
    # the kernel can leave the gate's log-probabilities behind (EM's next
    # E-step reads them) and can start from given ones (no logits product):
    # both equal the NumPy twin, and the given ones give the same objective
    X, mean, scale, theta, targets, w = _gate_problem(n_rows)
    K = theta.shape[1] + 1
    out, out_ref = np.full((n_rows, K), np.nan), np.full((n_rows, K), np.nan)
    loss, grad = kern.gate_objective_numba(X, mean, scale, theta, targets, w, out)
    loss_ref, grad_ref = kern.gate_objective_numpy(
        X, mean, scale, theta, targets, w, out_ref
    )
    Xs = (X - mean) / scale
    logits = np.zeros((n_rows, K))
    logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
    expected = logits - logsumexp(logits, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out_ref, expected, rtol=1e-12, atol=1e-12)
    for objective in (kern.gate_objective_numba, kern.gate_objective_numpy):
        given_loss, given_grad = objective(
            X, mean, scale, theta, targets, w, expected.copy(), True
        )
        np.testing.assert_allclose(given_loss, loss_ref, rtol=1e-10)
        np.testing.assert_allclose(given_grad, grad_ref, rtol=1e-9, atol=1e-9)
    # given means read: the values given are used, not recomputed
    shifted = expected + np.log(0.5)
    halved = kern.gate_objective_numba(
        X, mean, scale, theta, targets, w, shifted, True
    )[0]
    np.testing.assert_allclose(halved, loss_ref + np.log(2) * w.sum(), rtol=1e-10)


def test_gate_objective_proba_out_and_given(n_rows):
    # the probabilities left beside the log-probabilities are exp of them, and
    # a given evaluation reads them (no exponentials) for the same objective
    X, mean, scale, theta, targets, w = _gate_problem(n_rows)
    K = theta.shape[1] + 1
    for objective in (kern.gate_objective_numba, kern.gate_objective_numpy):
        log_out, out = np.full((n_rows, K), np.nan), np.full((n_rows, K), np.nan)
        loss, grad = objective(X, mean, scale, theta, targets, w, log_out, False, out)
        np.testing.assert_allclose(out, np.exp(log_out), rtol=1e-13, atol=1e-300)
        given_loss, given_grad = objective(
            X, mean, scale, theta, targets, w, log_out, True, out
        )
        np.testing.assert_allclose(given_loss, loss, rtol=1e-12)
        np.testing.assert_allclose(given_grad, grad, rtol=1e-10, atol=1e-10)
        # the given probabilities are read: halving them halves the gradient's
        # gate term, sum_i w_i g_ik z_i, and leaves the loss alone
        half_loss, half_grad = objective(
            X, mean, scale, theta, targets, w, log_out, True, 0.5 * out
        )
        assert half_loss == given_loss
        Xs = (X - mean) / scale
        gate_term = np.vstack([Xs.T @ (w[:, None] * out[:, 1:]), w @ out[:, 1:]])
        np.testing.assert_allclose(
            half_grad, given_grad - 0.5 * gate_term, rtol=1e-9, atol=1e-9
        )


def test_weighted_sq_residuals_matches_numpy(n_rows):
    rng = np.random.RandomState(3)
    Y = rng.standard_normal((n_rows, 2))
    means = rng.standard_normal((n_rows, 3, 2))
    weights = rng.uniform(size=(n_rows, 3))
    sq, w_sum = kern.weighted_sq_residuals_numba(Y, means, weights)
    sq_ref, w_sum_ref = kern.weighted_sq_residuals_numpy(Y, means, weights)
    np.testing.assert_allclose(sq, sq_ref, rtol=1e-12)
    np.testing.assert_allclose(w_sum, w_sum_ref, rtol=1e-12)
    # against the definition, for one expert and output
    np.testing.assert_allclose(
        sq[1, 0], np.sum(weights[:, 1] * (Y[:, 0] - means[:, 1, 0]) ** 2), rtol=1e-12
    )


@pytest.mark.parametrize("stride", [1, 7])
def test_gate_hessian_matches_numpy(n_rows, stride):
    X, mean, scale, theta, _, w = _gate_problem(n_rows)
    H = kern.gate_hessian_numba(X, mean, scale, theta, w, stride)
    H_ref = kern.gate_hessian_numpy(X, mean, scale, theta, w, stride)
    np.testing.assert_allclose(H, H_ref, rtol=1e-9, atol=1e-9 * np.abs(H_ref).max())
    np.testing.assert_array_equal(H, H.T)


def test_gate_hessian_is_the_derivative_of_the_gradient():
    X, mean, scale, theta, targets, w = _gate_problem(40, d=2, K=3)
    H = kern.gate_hessian_numpy(X, mean, scale, theta, w)
    eps = 1e-6
    for j in range(theta.size):
        step = np.zeros(theta.size)
        step[j] = eps
        up = kern.gate_objective_numpy(
            X, mean, scale, (theta.ravel() + step).reshape(theta.shape), targets, w
        )[1]
        down = kern.gate_objective_numpy(
            X, mean, scale, (theta.ravel() - step).reshape(theta.shape), targets, w
        )[1]
        np.testing.assert_allclose((up - down).ravel() / (2 * eps), H[:, j], atol=1e-6)


def test_weighted_grams_match_numpy_and_ignore_the_thread_count(n_rows):
    rng = np.random.RandomState(11)
    X = rng.standard_normal((n_rows, 4)) + 5.0
    Y = rng.standard_normal((n_rows, 2))
    weights = rng.dirichlet(np.ones(3), size=n_rows)
    shift = X[::7].mean(axis=0)
    grams = kern.weighted_grams_numba(X, shift, Y, weights)
    ref = kern.weighted_grams_numpy(X, shift, Y, weights)
    np.testing.assert_allclose(grams, ref, rtol=1e-12, atol=1e-9)
    # fixed parts summed in order: one thread gives the same bits
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = kern.weighted_grams_numba(X, shift, Y, weights)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, grams)


@pytest.mark.parametrize(
    "d, q, K, n",
    [(3, 1, 1, 50), (7, 1, 5, 1000), (20, 1, 8, 70_000), (27, 2, 3, 40_000)],
)
def test_tiled_grams_match_numpy_for_every_tile_shape(d, q, K, n):
    # p = d + 1 + q of 5, 9, 22 and 30 columns: whole 4 x 4 tiles and
    # padded ones, one block, partial blocks and several parts
    rng = np.random.RandomState(d)
    X = rng.standard_normal((n, d)) * 3.0 + 2.0
    Y = rng.standard_normal((n, q))
    weights = rng.dirichlet(np.ones(K), size=n)
    shift = X[::5].mean(axis=0)
    y_shift = Y[::5].mean(axis=0)
    grams = kern.weighted_grams_numba(X, shift, Y, weights, y_shift)
    ref = kern.weighted_grams_numpy(X, shift, Y, weights, y_shift)
    assert grams.shape == (K, d + 1 + q, d + 1 + q)
    np.testing.assert_allclose(grams, ref, rtol=1e-12, atol=1e-10 * np.abs(ref).max())
    np.testing.assert_array_equal(grams, grams.transpose(0, 2, 1))


_PARALLEL_KERNELS = """
import json, sys, time
import numpy as np
from skmoe import _kernels as kern


def make_calls(n, d=8, K=6):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, 1))
    means = rng.standard_normal((n, K, 1))
    var = np.ones((K, 1))
    logits = rng.standard_normal((n, K))
    resp = rng.dirichlet(np.ones(K), size=n)
    w = np.ones(n)
    theta = 0.1 * rng.standard_normal((d + 1, K - 1))
    codes = rng.randint(0, 3, n)
    expert_logits = rng.standard_normal((n, K, 3))
    mean, scale = np.zeros(d), np.ones(d)
    return {
        "log_softmax": lambda: kern.log_softmax_numba(logits),
        "gaussian_log_prob": lambda: kern.gaussian_log_prob_numba(Y, means, var),
        "responsibilities": lambda: kern.responsibilities_numba(logits, logits),
        "gaussian_responsibilities": lambda: kern.gaussian_responsibilities_numba(
            logits, Y, means, var),
        "gate_loss": lambda: kern.gate_loss_numba(logits, resp, w),
        "gate_objective": lambda: kern.gate_objective_numba(
            X, mean, scale, theta, resp, w),
        "gate_hessian": lambda: kern.gate_hessian_numba(X, mean, scale, theta, w),
        "weighted_sq_residuals": lambda: kern.weighted_sq_residuals_numba(
            Y, means, resp),
        "weighted_grams": lambda: kern.weighted_grams_numba(
            X, mean, Y, resp),
        "gaussian_moe_gradient": lambda: kern.gaussian_moe_gradient_numba(
            logits, means, Y, np.zeros((K, 1)), w),
        "logistic_moe_gradient": lambda: kern.logistic_moe_gradient_numba(
            logits, expert_logits, codes, w),
        "classifier_pass": lambda: kern.classifier_pass_numba(
            X, mean, scale, theta, logits, w, -27.6, resp),
        "em_pass": lambda: kern.em_pass_numba(
            X, Y, w, mean, scale, theta, means[:d, :, 0], np.zeros(K), var, resp,
            mean, np.zeros(1)),
        "linear_posterior": lambda: kern.linear_posterior_numba(
            X, Y, mean, scale, theta, means[:d, :, 0], np.zeros(K), var),
        "top_k_routes": lambda: kern.top_k_routes_numba(logits, 2),
        "routed_gate_objective": lambda: kern.routed_gate_objective_numba(
            X, mean, scale, theta, np.arange(0, 2 * n + 1, 2),
            np.tile([0, 3], n), resp[:, :2].ravel(), w),
        "routed_em_pass": lambda: kern.routed_em_pass_numba(
            X, Y, w, mean, scale, theta, means[:d, :, 0], np.zeros(K), var, 2,
            None, mean, np.zeros(1)),
    }


calls = make_calls(400_000)
if sys.argv[1] == "warm":
    # the serial builds first, as a fit on small data makes them: the
    # parallel builds must not load their cache entries
    for call in make_calls(100).values():
        call()
    for call in calls.values():
        call()
    sys.exit()
usage = {}
for name, call in calls.items():
    call()
    best = 0.0
    for _ in range(3):
        c0, t0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - t0 < 0.15:
            call()
        best = max(best, (time.process_time() - c0) / (time.perf_counter() - t0))
    usage[name] = best
print(json.dumps(usage))
"""


@pytest.mark.skipif(
    not kern.NUMBA_AVAILABLE or (os.cpu_count() or 1) < 2,
    reason="needs numba and two cores",
)
def test_parallel_kernels_run_in_parallel_from_a_warm_cache(tmp_path):
    # Numba once gave a function's serial and parallel builds one cache
    # entry: from a warm cache the "parallel" kernels ran on one core. In a
    # fresh process with a fresh cache, compile everything (serial builds
    # first), then in another process, loading from that cache, each
    # parallel kernel must use more than one core (a serial one cannot
    # exceed 1 CPU second per second).
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_NUM_THREADS="2")
    for stage in ("warm", "measure"):
        run = subprocess.run(
            [sys.executable, "-c", _PARALLEL_KERNELS, stage],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr
    usage = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(usage) == {n[: -len("_parallel")] for n in _parallel_builds()}
    slow = {name: round(u, 2) for name, u in usage.items() if u < 1.25}
    assert not slow, f"CPU seconds per wall second below 1.25: {slow}"


def _parallel_builds():
    """The kernel wrappers whose row loops have a parallel build."""
    names = {
        "log_softmax",
        "gaussian_log_prob",
        "responsibilities",
        "gaussian_responsibilities",
        "gate_loss",
        "gate_objective",
        "gate_hessian",
        "weighted_sq_residuals",
        "weighted_grams",
        "gaussian_moe_gradient",
        "logistic_moe_gradient",
        "classifier_pass",
        "em_pass",
        "linear_posterior",
        "top_k_routes",
        "routed_gate_objective",
        "routed_em_pass",
    }
    return {f"{name}_parallel" for name in names}


def test_vectorised_exp_is_within_an_ulp_of_numpy():
    if not kern.NUMBA_AVAILABLE:
        pytest.skip("numba kernels only")
    rng = np.random.RandomState(12)
    x = np.concatenate(
        [-rng.exponential(30.0, 5000), np.linspace(-700.0, 0.0, 1001), [-0.0, -1e-300]]
    )
    out, scratch = np.empty_like(x), np.empty_like(x)
    kern._exp_nonpositive(x, out, scratch, x.size)
    ref = np.exp(x)
    assert np.all(np.abs(out - ref) <= np.spacing(ref))
    # clamped below -700, where every use treats it as 0; NaN stays NaN
    y = np.array([-800.0, -np.inf, np.nan])
    out, scratch = np.empty(3), np.empty(3)
    kern._exp_nonpositive(y, out, scratch, 3)
    assert out[0] == out[1] == np.exp(-700.0) and np.isnan(out[2])


@pytest.mark.parametrize("q", [1, 2])
@pytest.mark.parametrize("intercept", [True, False])
def test_linear_experts_from_grams_match_the_per_expert_solve(q, intercept):
    from sklearn.linear_model import LinearRegression, Ridge

    from skmoe._em._stats import (
        fit_linear_closed_form,
        plain_grams,
        residual_variances_from_grams,
    )

    rng = np.random.RandomState(4)
    n, d, K = 500, 4, 5
    X = rng.standard_normal((n, d)) + 3.0
    Y = X @ rng.standard_normal((d, q)) + rng.standard_normal((n, q))
    weights = rng.uniform(size=(n, K))
    weights[:, 2] = 0.0  # no weight: left to the caller
    x_shift, y_shift = X[::7].mean(axis=0), Y[::7].mean(axis=0)
    grams = kern.weighted_grams_numpy(X, x_shift, Y, weights, y_shift)
    # expert 3 (no ridge) sees two equal columns: singular, left to the caller
    twins = np.c_[X[:, :3], X[:, 2]]
    grams[3] = kern.weighted_grams_numpy(twins, x_shift, Y, weights, y_shift)[3]
    # expert 4 sees one value of a column: plain_grams would not pass it
    flat = np.c_[np.full(n, 7.0), X[:, 1:]]
    grams[4] = kern.weighted_grams_numpy(flat, x_shift, Y, weights, y_shift)[4]
    templates = [
        LinearRegression(fit_intercept=intercept),
        Ridge(alpha=2.0, fit_intercept=intercept),
        LinearRegression(fit_intercept=intercept),
        LinearRegression(fit_intercept=intercept),
        Ridge(alpha=1.0, fit_intercept=intercept),
    ]
    alphas = np.array([0.0, 2.0, 0.0, 0.0, 1.0])
    flags = np.full(K, intercept)
    args = (grams, x_shift, y_shift, alphas, flags, 1e-6)
    got = kern.linear_experts_from_grams_numba(*args)
    ref = kern.linear_experts_from_grams_numpy(*args)
    np.testing.assert_array_equal(got[3], [True, True, False, False, False])
    np.testing.assert_array_equal(ref[3], got[3])
    np.testing.assert_array_equal(plain_grams(grams, x_shift), [1, 1, 0, 1, 0])
    for a, b in zip(got[:3], ref[:3], strict=True):
        np.testing.assert_allclose(a[:2], b[:2], rtol=1e-10, atol=1e-12)
    for k in range(2):
        est = fit_linear_closed_form(
            templates[k], alphas[k], grams[k], x_shift, False, y_shift
        )
        np.testing.assert_allclose(got[0][k], est.coef_, rtol=1e-10)
        np.testing.assert_allclose(got[1][k], est.intercept_, rtol=1e-10, atol=1e-12)
        variances = residual_variances_from_grams(
            [est], grams[k : k + 1], x_shift, y_shift
        )[0]
        np.testing.assert_allclose(got[2][k], variances, rtol=1e-10)


def test_linear_experts_from_grams_leave_near_singular_systems_to_lapack():
    # every system the kernel solves is one the per-expert path would solve
    # by Cholesky too (not by lstsq), with the same coefficients
    from sklearn.linear_model import LinearRegression

    from skmoe._em._stats import fit_linear_closed_form

    rng = np.random.RandomState(7)
    n = 300
    base = rng.standard_normal((n, 3))
    solved = []
    for delta in np.logspace(-4, -10, 25):
        X = base.copy()
        X[:, 1] = X[:, 0] + delta * rng.standard_normal(n)
        y = X @ [1.0, 1.0, 0.5] + rng.standard_normal(n)
        x_shift, y_shift = X.mean(axis=0), y[None].mean(axis=1)
        grams = kern.weighted_grams_numpy(
            X, x_shift, y[:, None], np.ones((n, 1)), y_shift
        )
        args = (grams, x_shift, y_shift, np.zeros(1), np.ones(1, bool), 1e-6)
        for lefg in (
            kern.linear_experts_from_grams_numba,
            kern.linear_experts_from_grams_numpy,
        ):
            coef, _, _, ok = lefg(*args)
            A = kern.linear_expert_system(grams[0], x_shift, 0.0, True)[0]
            rcond = 1 / (np.linalg.cond(A, 1))
            if ok[0]:
                assert rcond > 10 * np.finfo(float).eps
                est = fit_linear_closed_form(
                    LinearRegression(), 0.0, grams[0], x_shift, True, y_shift
                )
                # two Cholesky solves agree to the condition number's round-off
                rtol = 100 * np.finfo(float).eps / rcond
                np.testing.assert_allclose(coef[0, 0], est.coef_, rtol=rtol)
            solved.append(ok[0])
    assert any(solved) and not all(solved)


@pytest.mark.parametrize("seed", range(6))
def test_weighted_lloyd_is_scikit_learns_kmeans(seed):
    rng = np.random.RandomState(seed)
    n, d, K = 400 + 300 * seed, 1 + seed % 4, 2 + seed % 4
    Z = rng.standard_normal((n, d)) + 1.5 * rng.randint(0, 3, n)[:, None]
    w = rng.uniform(0.1, 3.0, n) if seed % 2 else np.ones(n)
    start = Z[rng.choice(n, K, replace=False)]
    tol = 1e-4 * np.mean(np.var(Z, axis=0))
    ref = KMeans(K, init=start, n_init=1).fit(Z, sample_weight=w)
    for lloyd in (kern.weighted_lloyd_numba, kern.weighted_lloyd_numpy):
        labels, centers, n_iter, ok = lloyd(Z, w, start, max_iter=300, tol=tol)
        assert ok
        np.testing.assert_array_equal(labels, ref.labels_)
        np.testing.assert_allclose(centers, ref.cluster_centers_, rtol=1e-10)
        assert n_iter == ref.n_iter_
    # a budget of one iteration: the labels of the centres it moved to
    labels, centers, n_iter, ok = kern.weighted_lloyd_numba(
        Z, w, start, max_iter=1, tol=0.0
    )
    assert n_iter == 1 and ok
    dist = ((Z[:, None] - centers[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, dist.argmin(axis=1))
    # no iterations: the start's own labels
    for lloyd in (kern.weighted_lloyd_numba, kern.weighted_lloyd_numpy):
        labels, centers, n_iter, ok = lloyd(Z, w, start, max_iter=0, tol=0.0)
        assert n_iter == 0 and ok
        np.testing.assert_array_equal(centers, start)
        dist = ((Z[:, None] - start[None]) ** 2).sum(axis=2)
        np.testing.assert_array_equal(labels, dist.argmin(axis=1))


def test_weighted_lloyd_twins_agree_on_tied_rows():
    # values on a grid: rows equidistant from two centres, which both twins
    # give to the first (scikit-learn's distances may send them the other way)
    rng = np.random.RandomState(2)
    Z = 0.5 * rng.randint(0, 6, size=(600, 2))
    start = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]])
    got = kern.weighted_lloyd_numba(Z, np.ones(600), start, max_iter=300, tol=0.0)
    ref = kern.weighted_lloyd_numpy(Z, np.ones(600), start, max_iter=300, tol=0.0)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-13)
    assert got[2:] == ref[2:]


def test_weighted_lloyd_stops_at_a_cluster_without_weight():
    Z = np.r_[np.zeros((20, 2)), np.ones((20, 2))]
    far = np.array([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0]])
    for lloyd in (kern.weighted_lloyd_numba, kern.weighted_lloyd_numpy):
        assert not lloyd(Z, np.ones(40), far, max_iter=300, tol=0.0)[3]
    # rows of zero weight do not hold a centre up
    w = np.r_[np.ones(20), np.zeros(20)]
    near = np.array([[0.0, 0.0], [1.0, 1.0]])
    for lloyd in (kern.weighted_lloyd_numba, kern.weighted_lloyd_numpy):
        assert not lloyd(Z, w, near, max_iter=300, tol=0.0)[3]


def test_vectorised_tanh_is_within_a_few_ulps_of_numpy():
    if not kern.NUMBA_AVAILABLE:
        pytest.skip("numba kernels only")
    rng = np.random.RandomState(13)
    x = np.concatenate(
        [
            rng.standard_normal(5000) * s
            for s in (1e-12, 1e-3, 0.05, 0.2, 1.0, 10.0, 400.0)
        ]
        + [np.linspace(-0.3, 0.3, 2001), [0.0, -0.0, 0.125, -0.125, 1e-310]]
    )
    v = x.copy()
    kern._tanh_inplace(v)
    ref = np.tanh(x)
    assert np.all(np.abs(v - ref) <= 4 * np.spacing(np.abs(ref)))
    assert np.all(np.signbit(v) == np.signbit(ref))
    y = np.array([np.inf, -np.inf, np.nan])
    kern._tanh_inplace(y)
    assert y[0] == 1.0 and y[1] == -1.0 and np.isnan(y[2])


@pytest.mark.parametrize("previous", [True, False])
def test_classifier_pass_matches_numpy(n_rows, previous):
    rng = np.random.RandomState(14)
    d, K = 3, 4
    X = rng.standard_normal((n_rows, d)) * [1.0, 10.0, 0.1] + [0.0, 50.0, -3.0]
    w = rng.uniform(0.2, 2.0, n_rows)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    theta = rng.standard_normal((d + 1, K - 1))
    log_label = np.log(rng.uniform(1e-20, 1.0, (n_rows, K)))
    log_label[::5, 1] = -np.inf  # a class the expert does not hold
    floor = np.log(1e-12)
    prev = rng.dirichlet(np.ones(K), size=n_rows) if previous else None
    args = (X, mean, scale, theta, log_label, w, floor, prev)
    got = kern.classifier_pass_numba(*args)
    ref = kern.classifier_pass_numpy(*args)
    for a, b in zip(got[:3], ref[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(got[3:], ref[3:], rtol=1e-12)
    assert np.isnan(got[3]) == (not previous)
    # and it is the E-step and the gate's objective of the kernels apart
    Xs = (X - mean) / scale
    logits = np.zeros((n_rows, K))
    logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
    resp, row_ll = kern.responsibilities_numpy(
        kern.log_softmax_numpy(logits), np.maximum(log_label, floor)
    )
    np.testing.assert_allclose(got[0], resp, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(got[1], row_ll, rtol=1e-12)
    loss, grad = kern.gate_objective_numpy(X, mean, scale, theta, resp, w)
    np.testing.assert_allclose(got[2], grad, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(got[4], loss, rtol=1e-12)
    np.testing.assert_allclose(got[5], w @ row_ll, rtol=1e-12)
    if previous:
        np.testing.assert_allclose(
            got[3], kern.gate_objective_numpy(X, mean, scale, theta, prev, w)[0]
        )


@pytest.mark.parametrize("previous", [True, False])
def test_em_pass_matches_numpy(n_rows, previous):
    rng = np.random.RandomState(13)
    d, K, q = 3, 4, 2
    X = rng.standard_normal((n_rows, d)) * [1.0, 10.0, 0.1] + [0.0, 50.0, -3.0]
    Y = rng.standard_normal((n_rows, q)) + 7.0
    w = rng.uniform(0.2, 2.0, n_rows)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    theta = rng.standard_normal((d + 1, K - 1))
    coef = rng.standard_normal((d, K * q))
    intercept = rng.standard_normal(K * q)
    variances = rng.uniform(0.05, 2.0, (K, q))
    prev = rng.dirichlet(np.ones(K), size=n_rows) if previous else None
    shifts = X[::7].mean(axis=0), Y[::7].mean(axis=0)
    args = (X, Y, w, mean, scale, theta, coef, intercept, variances, prev, *shifts)
    resp, row_ll, grams, sums, scalars, expert_ll = kern.em_pass_numba(*args)
    ref = kern.em_pass_numpy(*args)
    # responsibilities are exponentials of differences of log-densities of
    # hundreds: their round-off is a few hundred ulps of those
    np.testing.assert_allclose(resp, ref[0], rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(row_ll, ref[1], rtol=1e-12)
    np.testing.assert_allclose(grams, ref[2], rtol=1e-11, atol=1e-8)
    np.testing.assert_allclose(sums, ref[3], rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(scalars, ref[4], rtol=1e-11)
    np.testing.assert_allclose(expert_ll, ref[5], rtol=1e-10)
    np.testing.assert_allclose(expert_ll.sum(), scalars[2], rtol=1e-10)
    assert np.isnan(scalars[0]) == (not previous)
    # and it is the E-step and the Gram matrices of the kernels apart
    n = n_rows
    Xs = (X - mean) / scale
    logits = np.zeros((n, K))
    logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
    log_g = kern.log_softmax_numpy(logits)
    means = (X @ coef + intercept).reshape(n, K, q)
    r, ll = kern.gaussian_responsibilities_numpy(log_g, Y, means, variances)
    np.testing.assert_allclose(resp, r, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(
        grams,
        kern.weighted_grams_numpy(X, shifts[0], Y, r * w[:, None], shifts[1]),
        rtol=1e-11,
        atol=1e-8,
    )


def test_linear_posterior_matches_numpy_and_the_em_pass(n_rows):
    rng = np.random.RandomState(15)
    d, K, q = 3, 4, 2
    X = rng.standard_normal((n_rows, d)) * [1.0, 10.0, 0.1] + [0.0, 50.0, -3.0]
    Y = rng.standard_normal((n_rows, q)) + 7.0
    mean, scale = X.mean(axis=0), X.std(axis=0)
    theta = rng.standard_normal((d + 1, K - 1))
    coef = rng.standard_normal((d, K * q))
    intercept = rng.standard_normal(K * q)
    variances = rng.uniform(0.05, 2.0, (K, q))
    args = (X, Y, mean, scale, theta, coef, intercept, variances)
    resp, row_ll = kern.linear_posterior_numba(*args)
    ref = kern.linear_posterior_numpy(*args)
    np.testing.assert_allclose(resp, ref[0], rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(row_ll, ref[1], rtol=1e-12)
    # the E-step of the fused pass, to round-off (it folds the gate's
    # standardisation into one product with the experts' means)
    fused = kern.em_pass_numba(
        X, Y, np.ones(n_rows), *args[2:], None, np.zeros(d), np.zeros(q)
    )
    np.testing.assert_allclose(fused[0], resp, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(fused[1], row_ll, rtol=1e-12)
    # a row no expert explains: the posterior of the other kernels
    variances[:] = 1e-300
    resp, row_ll = kern.linear_posterior_numba(*args)
    ref = kern.linear_posterior_numpy(*args)
    np.testing.assert_array_equal(resp, ref[0])
    fused = kern.em_pass_numba(
        X, Y, np.ones(n_rows), *args[2:], None, np.zeros(d), np.zeros(q)
    )
    np.testing.assert_allclose(fused[0], ref[0], rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(fused[1], ref[1], rtol=1e-12)


@pytest.mark.parametrize(
    "shapes", [[(3, 5), (6, 3)], [(3, 4), (5, 3), (4, 2)], [(3, 2)]]
)
def test_mlp_gate_objective_matches_numpy(shapes):
    rng = np.random.RandomState(14)
    n = 60
    flat = rng.standard_normal(sum(a * b for a, b in shapes))
    Xs = rng.standard_normal((n, shapes[0][0] - 1))
    targets = rng.dirichlet(np.ones(shapes[-1][1] + 1), size=n)
    w = rng.uniform(0.5, 2.0, n)
    loss, grad = kern.mlp_gate_objective_numba(flat, shapes, Xs, targets, w, 0.3)
    ref_loss, ref_grad = kern.mlp_gate_objective_numpy(
        flat, shapes, Xs, targets, w, 0.3
    )
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)


def _network_gate_problem(shapes, n=120, seed=5):
    rng = np.random.RandomState(seed)
    Xs = rng.standard_normal((n, shapes[0][0] - 1))
    targets = rng.dirichlet(np.ones(shapes[-1][1] + 1), size=n)
    w = rng.uniform(0.5, 2.0, n)
    flat = 0.5 * rng.standard_normal(sum(a * b for a, b in shapes))
    return flat, Xs, targets, w


def test_mlp_gate_minimize_matches_numpy_where_convex():
    # no hidden layer: the linear softmax gate, one minimum for both solvers
    shapes = [(4, 2)]
    flat, Xs, targets, w = _network_gate_problem(shapes)
    got, n_iter = kern.mlp_gate_minimize_numba(
        flat, shapes, Xs, targets, w, 0.1, max_iter=1000, tol=1e-15
    )
    ref, _ = kern.mlp_gate_minimize_numpy(
        flat, shapes, Xs, targets, w, 0.1, max_iter=1000, tol=1e-15
    )
    assert 0 < n_iter < 1000
    np.testing.assert_allclose(got, ref, atol=1e-6)
    loss = kern.mlp_gate_objective_numpy(got, shapes, Xs, targets, w, 0.1)[0]
    ref_loss = kern.mlp_gate_objective_numpy(ref, shapes, Xs, targets, w, 0.1)[0]
    assert loss == pytest.approx(ref_loss, rel=1e-10)


@pytest.mark.parametrize("shapes", [[(3, 5), (6, 3)], [(3, 4), (5, 3), (4, 2)]])
def test_mlp_gate_minimize_descends_to_a_stationary_point(shapes):
    flat, Xs, targets, w = _network_gate_problem(shapes)
    start_loss, start_grad = kern.mlp_gate_objective_numpy(
        flat, shapes, Xs, targets, w, 0.01
    )
    losses = [start_loss]
    for budget in (1, 5, 20):
        got, n_iter = kern.mlp_gate_minimize_numba(
            flat, shapes, Xs, targets, w, 0.01, max_iter=budget, tol=0.0
        )
        assert n_iter == budget
        loss = kern.mlp_gate_objective_numpy(got, shapes, Xs, targets, w, 0.01)[0]
        losses.append(loss)
    assert np.all(np.diff(losses) < 0)
    got, n_iter = kern.mlp_gate_minimize_numba(
        flat, shapes, Xs, targets, w, 0.01, max_iter=20000, tol=0.0
    )
    loss, grad = kern.mlp_gate_objective_numpy(got, shapes, Xs, targets, w, 0.01)
    assert n_iter < 20000
    assert loss < losses[-1]
    assert np.max(np.abs(grad)) < 1e-6 * np.max(np.abs(start_grad))
    # no iterations: the start, untouched
    same, n_iter = kern.mlp_gate_minimize_numba(
        flat, shapes, Xs, targets, w, 0.01, max_iter=0, tol=0.0
    )
    assert n_iter == 0
    np.testing.assert_array_equal(same, flat)


@pytest.mark.parametrize("k", [1, 2, 5, 6])
def test_top_k_routes_match_numpy(k):
    rng = np.random.RandomState(3)
    log_gate = rng.standard_normal((3000, 6))
    log_gate[:50, 1] = log_gate[:50, 4]  # ties go to the smaller index
    experts, routed = kern.top_k_routes_numba(log_gate, k)
    experts_ref, routed_ref = kern.top_k_routes_numpy(log_gate, k)
    np.testing.assert_array_equal(experts, experts_ref)
    np.testing.assert_allclose(routed, routed_ref, rtol=1e-13)
    kept = np.take_along_axis(log_gate, experts, axis=1).min(axis=1)
    outside = np.where(np.isfinite(routed), -np.inf, log_gate).max(axis=1)
    assert np.all(kept >= outside)
    np.testing.assert_allclose(np.exp(routed).sum(axis=1), 1.0)


def _routes(rng, n, K):
    """Random routes of 1 to K experts per row, with targets summing to 1."""
    counts = rng.randint(1, K + 1, n)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    experts = np.concatenate([np.sort(rng.permutation(K)[:c]) for c in counts])
    targets = np.concatenate([rng.dirichlet(np.ones(c)) for c in counts])
    return indptr, experts, targets


@pytest.mark.parametrize("n_rows", [40, 20_000])
def test_routed_gate_objective_matches_numpy(n_rows):
    rng = np.random.RandomState(4)
    X, mean, scale, theta, _, w = _gate_problem(n_rows, 5, 6, seed=4)
    indptr, experts, targets = _routes(rng, n_rows, 6)
    loss, grad = kern.routed_gate_objective_numba(
        X, mean, scale, theta, indptr, experts, targets, w
    )
    ref_loss, ref_grad = kern.routed_gate_objective_numpy(
        X, mean, scale, theta, indptr, experts, targets, w
    )
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-11)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * n_rows)
    # the gradient is the loss's: a central difference along a direction
    step = 1e-6 * rng.standard_normal(theta.shape)
    up = kern.routed_gate_objective_numpy(
        X, mean, scale, theta + step, indptr, experts, targets, w
    )[0]
    down = kern.routed_gate_objective_numpy(
        X, mean, scale, theta - step, indptr, experts, targets, w
    )[0]
    np.testing.assert_allclose(up - down, 2 * np.sum(ref_grad * step), rtol=1e-5)


def test_routed_gate_objective_over_every_expert_is_the_dense_one():
    X, mean, scale, theta, targets, w = _gate_problem(500, 4, 5, seed=5)
    indptr = np.arange(0, 500 * 5 + 1, 5)
    experts = np.tile(np.arange(5), 500)
    for routed in (kern.routed_gate_objective_numba, kern.routed_gate_objective_numpy):
        loss, grad = routed(X, mean, scale, theta, indptr, experts, targets.ravel(), w)
        dense_loss, dense_grad = kern.gate_objective_numpy(
            X, mean, scale, theta, targets, w
        )
        np.testing.assert_allclose(loss, dense_loss, rtol=1e-12)
        np.testing.assert_allclose(grad, dense_grad, rtol=1e-10, atol=1e-10)


def _routed_pass_problem(n, d, K, q, seed):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, d)) * 3.0 + 1.0
    Y = rng.standard_normal((n, q))
    w = rng.uniform(0.5, 2.0, n)
    w[:3] = 0.0
    theta = rng.standard_normal((d + 1, K - 1))
    coef = 0.3 * rng.standard_normal((d, K * q))
    intercept = rng.standard_normal(K * q)
    variances = rng.uniform(0.5, 2.0, (K, q))
    return (X, Y, w, X.mean(axis=0), X.std(axis=0), theta, coef, intercept, variances)


@pytest.mark.parametrize("n_rows", [300, 30_000])
@pytest.mark.parametrize(
    ("d", "K", "q", "k"), [(5, 6, 1, 2), (4, 5, 2, 3), (3, 4, 1, 1)]
)
def test_routed_em_pass_matches_numpy_and_the_steps_apart(n_rows, d, K, q, k):
    args = _routed_pass_problem(n_rows, d, K, q, seed=d + K)
    X, Y, w, mean, scale, theta, coef, intercept, variances = args
    x_shift, y_shift = X[::7].mean(axis=0), Y[::7].mean(axis=0)
    rng = np.random.RandomState(k)
    previous = (
        np.sort(np.argsort(rng.rand(n_rows, K), axis=1)[:, :k], axis=1),
        rng.dirichlet(np.ones(k), size=n_rows),
    )
    got = kern.routed_em_pass_numba(*args, k, previous, x_shift, y_shift)
    ref = kern.routed_em_pass_numpy(*args, k, previous, x_shift, y_shift)
    np.testing.assert_array_equal(got[0], ref[0])
    for a, b in zip(got[1:], ref[1:], strict=True):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
    # the loss at the previous routes is the routed gate objective there
    indptr = np.arange(0, n_rows * k + 1, k)
    np.testing.assert_allclose(
        got[7][2],
        kern.routed_gate_objective_numpy(
            X, mean, scale, theta, indptr, previous[0].ravel(), previous[1].ravel(), w
        )[0],
        rtol=1e-11,
    )
    none = kern.routed_em_pass_numba(*args, k, None, x_shift, y_shift)
    assert np.isnan(none[7][2]) and none[7][:2] == got[7][:2]
    # the NumPy twin is the routed E-step, Gram matrices and gate objective
    # of the steps apart
    experts, route_resp, resp, row_ll, grams, grad, curvature, scalars, _ = ref
    Xs = (X - mean) / scale
    logits = np.zeros((n_rows, K))
    logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
    top, routed = kern.top_k_routes_numpy(kern.log_softmax_numpy(logits), k)
    np.testing.assert_array_equal(experts, top)
    means = (X @ coef + intercept).reshape(n_rows, K, q)
    resp_ref, ll_ref = kern.gaussian_responsibilities_numpy(routed, Y, means, variances)
    np.testing.assert_allclose(resp, resp_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(row_ll, ll_ref, rtol=1e-12)
    np.testing.assert_array_equal(route_resp, np.take_along_axis(resp, experts, 1))
    np.testing.assert_allclose(
        grams,
        kern.weighted_grams_numpy(X, x_shift, Y, resp * w[:, None], y_shift),
        rtol=1e-12,
        atol=1e-12 * np.abs(grams).max(),
    )
    loss, routed_grad = kern.routed_gate_objective_numpy(
        X, mean, scale, theta, indptr, experts.ravel(), route_resp.ravel(), w
    )
    np.testing.assert_allclose(scalars[0], loss, rtol=1e-12)
    np.testing.assert_allclose(scalars[1], w @ row_ll, rtol=1e-12)
    # the gradient in every expert's coefficients: the free ones are the
    # objective's, and expert 0's balances them (a common shift of every
    # logit leaves each routed softmax as it was)
    np.testing.assert_allclose(grad[:, 1:], routed_grad, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-9 * np.abs(grad).max())
    # each curvature block: the Hessian's diagonal block plus the floor's
    # term, over the expert's routes
    g = np.exp(routed)
    h = np.where(
        np.isfinite(routed),
        (w * resp.sum(axis=1))[:, None] * (g * (1 - g) + kern._ROUTED_CURVATURE_FLOOR),
        0.0,
    )
    Z = np.hstack([Xs, np.ones((n_rows, 1))])
    np.testing.assert_allclose(
        curvature,
        np.einsum("ik,ia,ib->kab", h, Z, Z),
        rtol=1e-10,
        atol=1e-12 * np.abs(curvature).max(),
    )


def test_routed_gate_step_lowers_the_routed_objective():
    from skmoe._gates._softmax import SoftmaxGate, routed_newton_step

    n, d, K, k = 4000, 3, 6, 2
    X, Y, w, mean, scale, theta, coef, intercept, variances = _routed_pass_problem(
        n, d, K, 1, seed=9
    )
    gate = SoftmaxGate(alpha=1e-2)
    gate._mean, gate._scale, gate._theta = mean, scale, theta
    gate._set_public()
    indptr = np.arange(0, n * k + 1, k)
    values = []
    for _ in range(6):
        experts, route_resp, *_, grad, curvature, scalars, _ = (
            kern.routed_em_pass_numpy(
                X,
                Y,
                w,
                mean,
                scale,
                gate._theta,
                coef,
                intercept,
                variances,
                k,
                None,
                mean,
                np.zeros(1),
            )
        )
        targets = route_resp.ravel()

        def objective(t, experts=experts, targets=targets):
            loss = kern.routed_gate_objective_numpy(
                X, mean, scale, t, indptr, experts.ravel(), targets, w
            )[0]
            return loss + 0.5 * gate.alpha * np.sum(t[:-1] ** 2)

        def unpenalised(t, experts=experts, targets=targets):
            return kern.routed_gate_objective_numpy(
                X, mean, scale, t, indptr, experts.ravel(), targets, w
            )[0]

        before = objective(gate._theta)
        routed_newton_step(gate, grad, curvature, scalars[0], unpenalised, {})
        values.append((before, objective(gate._theta)))
    assert all(after <= before for before, after in values)
    assert values[0][1] < values[0][0]  # and the first step is taken
