"""The Array API (GPU) path of EM: the same fit as the numba CPU path.

The path is written once against the Array API standard; here it runs on the
CPU with NumPy (``xp=array_api_compat.numpy``) and array-api-strict (through
scikit-learn's ``array_api_dispatch``), so the GPU code is exercised without a
GPU. Tests marked ``gpu`` run it on CuPy and are skipped without CuPy and a
CUDA device.
"""

import subprocess
import sys
import types
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.externals import array_api_compat
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._backends._array_api import fit_array_api, log_softmax, psd_solve
from skmoe._backends._namespace import use_array_api
from skmoe._kernels import log_softmax_numpy
from skmoe.datasets import make_moe_classification, make_moe_regression

XP_NUMPY = array_api_compat.numpy


@pytest.fixture(scope="module")
def mixture():
    X, y, params = make_moe_regression(
        n_samples=2000,
        n_features=3,
        n_experts=3,
        noise=0.2,
        return_params=True,
        random_state=0,
    )
    return X, y, params


def _fit_xp(est, X, y, sample_weight=None, xp=XP_NUMPY):
    return fit_array_api(est, X, y, sample_weight, xp=xp)


def _expert_coefs(est):
    return np.array([np.ravel(e.coef_) for e in est.experts_])


def _assert_same_fit(a, b, rtol_ll=1e-6, atol_coef=1e-5):
    """Two fits of one model from one start: same optimum and parameters.

    The CPU gate's first M-step is L-BFGS and the Array API path's Newton;
    both stop at a tolerance, and EM at ``tol=1e-6`` per unit weight, so
    the log-likelihoods agree to about that, not to round-off.
    """
    np.testing.assert_allclose(a.log_likelihood_, b.log_likelihood_, rtol=rtol_ll)
    np.testing.assert_allclose(_expert_coefs(a), _expert_coefs(b), atol=atol_coef)
    np.testing.assert_allclose(
        [np.ravel(e.intercept_) for e in a.experts_],
        [np.ravel(e.intercept_) for e in b.experts_],
        atol=atol_coef,
    )
    np.testing.assert_allclose(a.noise_variance_, b.noise_variance_, rtol=1e-4)
    np.testing.assert_allclose(a.gate_.coef_, b.gate_.coef_, atol=100 * atol_coef)


# ---------------------------------------------------------------------------
# the kernels against their NumPy references
# ---------------------------------------------------------------------------


def test_log_softmax_matches_numpy_reference():
    rng = np.random.RandomState(0)
    logits = 30 * rng.standard_normal((50, 4))
    np.testing.assert_allclose(
        log_softmax(logits, XP_NUMPY), log_softmax_numpy(logits), atol=1e-12
    )


def test_psd_solve_gives_the_minimum_norm_solution():
    rng = np.random.RandomState(0)
    M = rng.standard_normal((5, 3))
    A = M @ M.T  # rank 3 of 5: singular
    B = rng.standard_normal((5, 2))
    expected = np.linalg.lstsq(A, B, rcond=None)[0]
    np.testing.assert_allclose(psd_solve(A, B, XP_NUMPY), expected, atol=1e-10)
    # batched, and the plain solution of a regular system
    A2 = np.stack([A + np.eye(5), 2 * np.eye(5)])
    np.testing.assert_allclose(
        psd_solve(A2, np.stack([B, B]), XP_NUMPY),
        np.linalg.solve(A2, np.stack([B, B])),
        atol=1e-12,
    )


# ---------------------------------------------------------------------------
# the same fit as the numba CPU path, and between namespaces
# ---------------------------------------------------------------------------


def test_numpy_namespace_agrees_with_numba_path_and_recovers_truth(mixture):
    X, y, params = mixture
    cpu = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(X, y)
    est = _fit_xp(MixtureOfExpertsRegressor(n_experts=3, random_state=0), X, y)
    _assert_same_fit(est, cpu)
    assert est.converged_
    # the known mixture's experts are found (each true expert by one fitted)
    coefs = _expert_coefs(est)
    for true in params.coef:
        assert np.min(np.abs(coefs - true).max(axis=1)) < 0.05
    np.testing.assert_allclose(
        np.sort(np.sqrt(est.noise_variance_)), np.sort(params.noise), rtol=0.1
    )
    # fitted attributes are NumPy float64; predictions match the CPU fit's
    assert isinstance(est.gate_.coef_, np.ndarray)
    assert est.gate_.coef_.dtype == np.float64
    np.testing.assert_allclose(est.predict(X), cpu.predict(X), atol=1e-5)
    np.testing.assert_allclose(
        est.summary().to_numpy(), cpu.summary().to_numpy(), rtol=1e-5, atol=1e-6
    )


def test_log_likelihood_never_decreases(mixture):
    X, y, _ = mixture
    est = _fit_xp(
        MixtureOfExpertsRegressor(
            n_experts=3, init="random", gate_alpha=0.0, random_state=1
        ),
        X,
        y,
    )
    curve = est.log_likelihood_curve_
    # a long ascent from random responsibilities: many steps to check
    assert est.converged_ and len(curve) > 10
    assert np.all(np.diff(curve) >= -1e-9 * np.abs(curve[1:])), curve


def test_array_api_strict_gives_the_numpy_namespace_fit(mixture, monkeypatch):
    array_api_strict = pytest.importorskip("array_api_strict")
    X, y, _ = mixture
    ref = _fit_xp(MixtureOfExpertsRegressor(n_experts=3, random_state=0), X, y)
    # scikit-learn asks for this before it turns array_api_dispatch on; it
    # matters to SciPy, which this path does not use
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    Xs, ys = array_api_strict.asarray(X), array_api_strict.asarray(y)
    est = MixtureOfExpertsRegressor(n_experts=3, random_state=0)
    with sklearn.config_context(array_api_dispatch=True):
        assert use_array_api("cpu", Xs)
        assert not use_array_api("cpu", X)  # NumPy keeps the numba path
        est.fit(Xs, ys)
    assert not use_array_api("cpu", Xs)  # only with array_api_dispatch on
    _assert_same_fit(est, ref, rtol_ll=1e-12, atol_coef=1e-9)
    np.testing.assert_array_equal(est.log_likelihood_curve_.shape, (est.n_iter_,))


def test_float32_computes_in_float32_close_to_float64(mixture):
    X, y, _ = mixture
    ref = _fit_xp(MixtureOfExpertsRegressor(n_experts=3, random_state=0), X, y)
    est = _fit_xp(
        MixtureOfExpertsRegressor(n_experts=3, random_state=0),
        X.astype(np.float32),
        y.astype(np.float32),
    )
    # float32 keeps ~7 digits: the log-likelihood agrees to about 1e-6
    _assert_same_fit(est, ref, rtol_ll=1e-5, atol_coef=1e-3)
    assert est.gate_.coef_.dtype == np.float64
    assert est.predict(X).dtype == np.float64


def test_float32_constant_column_is_not_blown_up_to_noise(mixture):
    # the round-off of a constant float32 column must not be standardised
    # into a unit-spread random feature
    X, y, _ = mixture
    X1 = np.column_stack([X, np.full(len(X), 3.3)])
    ref = _fit_xp(MixtureOfExpertsRegressor(n_experts=3, random_state=0), X, y)
    est = _fit_xp(
        MixtureOfExpertsRegressor(n_experts=3, random_state=0),
        X1.astype(np.float32),
        y.astype(np.float32),
    )
    assert est.gate_._scale[-1] == 1.0
    np.testing.assert_allclose(est.log_likelihood_, ref.log_likelihood_, rtol=1e-5)
    assert np.abs(_expert_coefs(est)[:, -1]).max() < 1e-3
    assert np.abs(est.gate_.coef_[-1]).max() < 1e-3


def test_sample_weight_multi_output_and_ridge_agree_with_numba_path():
    X, y = make_moe_regression(
        n_samples=1000, n_features=2, n_experts=3, noise=0.2, random_state=0
    )
    rng = np.random.RandomState(0)
    Y = np.column_stack([y, 0.5 * y + 0.1 * rng.standard_normal(len(y)) + 3.0])
    sw = rng.uniform(0.2, 2.0, len(y))
    experts = [
        ("ols", LinearRegression()),
        ("ridge", Ridge(alpha=5.0)),
        ("origin", Ridge(alpha=1.0, fit_intercept=False)),
    ]
    kwargs = dict(estimators=experts, random_state=0)
    cpu = MixtureOfExpertsRegressor(**kwargs).fit(X, Y, sample_weight=sw)
    est = _fit_xp(MixtureOfExpertsRegressor(**kwargs), X, Y, sw)
    assert est.converged_ and cpu.converged_
    _assert_same_fit(est, cpu, atol_coef=1e-3)
    assert est.noise_variance_.shape == (3, 2)
    # pandas inputs are validated as on the CPU: feature names are kept
    named = _fit_xp(
        MixtureOfExpertsRegressor(**kwargs), pd.DataFrame(X, columns=["a", "b"]), Y
    )
    assert named.feature_names_in_.tolist() == ["a", "b"]
    assert est.experts_[2].intercept_.tolist() == [0.0, 0.0]
    # the gate solvers stop at their own tolerances on a flat optimum: the
    # predictions agree to a few 1e-4 (the log-likelihoods to 1e-6)
    np.testing.assert_allclose(est.predict(X), cpu.predict(X), atol=3e-3)


def test_restarts_and_warm_start_agree_with_numba_path(mixture):
    X, y, _ = mixture
    kwargs = dict(n_experts=3, n_init=2, init="random", max_iter=30, random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = MixtureOfExpertsRegressor(**kwargs).fit(X, y)
        est = _fit_xp(MixtureOfExpertsRegressor(**kwargs), X, y)
    _assert_same_fit(est, cpu, rtol_ll=1e-7, atol_coef=1e-4)
    # a warm start goes on from the fit: its first iteration is no worse
    first = est.log_likelihood_
    est.set_params(warm_start=True, max_iter=200)
    _fit_xp(est, X, y)
    assert est.log_likelihood_curve_[0] >= first - 1e-9 * abs(first)
    cpu.set_params(warm_start=True, max_iter=200).fit(X, y)
    _assert_same_fit(est, cpu, rtol_ll=1e-7, atol_coef=1e-4)


def test_dead_expert_is_reseeded_as_on_the_cpu():
    # a gate that has switched expert 2 off (its weight about 1e-35): it is
    # re-seeded on the worst-explained rows, as on the CPU
    X, y = make_moe_regression(n_samples=200, n_experts=2, random_state=0)
    est = MixtureOfExpertsRegressor(n_experts=3, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    est.set_params(warm_start=True, max_iter=20)
    est.gate_._theta[-1, 1] = -80.0
    est.gate_._set_public()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit_xp(est, X, y)
    assert any("collapsed" in str(w.message) for w in caught)
    assert np.all(np.isfinite(est.log_likelihood_curve_))
    assert np.all(est.noise_variance_ >= est._likelihood.noise_floor)


# ---------------------------------------------------------------------------
# clear errors; CuPy stays unimported
# ---------------------------------------------------------------------------


def test_importing_skmoe_does_not_import_cupy():
    code = (
        "import sys, skmoe, skmoe._backends._array_api; "
        "from skmoe import MixtureOfExpertsRegressor as M; "
        "import numpy as np; M(n_experts=2, random_state=0, max_iter=3)"
        ".fit(np.random.RandomState(0).rand(50, 2), np.arange(50.0)); "
        "assert 'cupy' not in sys.modules, 'cupy imported'"
    )
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True)


def test_cuda_without_cupy_names_the_extra(mixture, monkeypatch):
    X, y, _ = mixture
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now fails
    est = MixtureOfExpertsRegressor(n_experts=2, device="cuda")
    with pytest.raises(ImportError, match=r"needs CuPy.*pip install skmoe\[gpu\]"):
        est.fit(X, y)


@pytest.mark.parametrize("count", [0, "raise"])
def test_cuda_without_gpu_says_so(mixture, monkeypatch, count):
    X, y, _ = mixture

    def get_device_count():
        if count == "raise":
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device")
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    est = MixtureOfExpertsRegressor(n_experts=2, device="cuda")
    with pytest.raises(RuntimeError, match="device='cuda' found no (usable )?CUDA"):
        est.fit(X, y)


def test_unsupported_configurations_are_refused_before_cupy_is_needed(mixture):
    X, y, _ = mixture
    trees = MixtureOfExpertsRegressor(DecisionTreeRegressor(), device="cuda")
    with pytest.raises(ValueError, match="DecisionTreeRegressor.*device='cpu'"):
        trees.fit(X, y)
    Xc, yc = make_moe_classification(n_samples=100, random_state=0)
    clf = MixtureOfExpertsClassifier(n_experts=2, device="cuda")
    with pytest.raises(ValueError, match="cannot fit MixtureOfExpertsClassifier"):
        clf.fit(Xc, yc)
    with pytest.raises(ValueError, match="device"):
        MixtureOfExpertsRegressor(device="gpu").fit(X, y)


# ---------------------------------------------------------------------------
# on a real GPU
# ---------------------------------------------------------------------------


def _cupy_with_gpu():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # no driver
        pytest.skip(f"no CUDA device: {exc!r}")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gpu_fit_agrees_with_numba_path(mixture, dtype):
    cupy = _cupy_with_gpu()
    X, y, _ = mixture
    cpu = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(X, y)
    est = MixtureOfExpertsRegressor(n_experts=3, device="cuda", random_state=0)
    est.fit(X.astype(dtype), y.astype(dtype))
    tight = dtype == np.float64
    _assert_same_fit(
        est, cpu, rtol_ll=1e-8 if tight else 1e-5, atol_coef=1e-5 if tight else 1e-3
    )
    # CuPy inputs take the GPU path with the default device, fitted
    # attributes come back as NumPy
    on_gpu = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(
        cupy.asarray(X.astype(dtype)), cupy.asarray(y.astype(dtype))
    )
    assert isinstance(on_gpu.experts_[0].coef_, np.ndarray)
    _assert_same_fit(on_gpu, est, rtol_ll=1e-10, atol_coef=1e-6)
