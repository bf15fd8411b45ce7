"""EM for linear-Gaussian experts written once in the Array API (CuPy on a GPU).

One EM iteration here is the same maths as the NumPy + numba CPU path of
:class:`~skmoe.MixtureOfExpertsRegressor` with linear experts and the linear
softmax gate, in operations every Array API namespace has (matrix products,
element-wise functions, reductions, ``linalg.eigh``), so the same code runs on
CuPy (``device="cuda"``) and, for the tests, on NumPy and array-api-strict:

- E-step: the gate's log-softmax, each expert's Gaussian log-density, the
  responsibilities and per-row log-likelihood by log-sum-exp.
- Experts' M-step: weighted least squares (plus ridge) through each expert's
  weighted normal equations, the reproduction of LinearRegression and Ridge
  that the CPU path's closed form also uses; noise variances as weighted
  residual spreads, floored as on the CPU.
- Gate's M-step: the weighted soft-target cross-entropy plus ``alpha / 2
  ||W||^2`` (on standardised inputs, expert 0 the reference), minimised by
  Newton's method with the exact Hessian and a backtracking (Armijo) line
  search, from the previous iteration's gate. Newton rather than the CPU's
  L-BFGS because a Hessian is a few large matrix products, which a GPU does
  well, and it converges in a few steps; both reach the same minimum.

The data are moved to the device once and stay there; per iteration only
scalars (the log-likelihood, the experts' total responsibilities) come back.
Work is done in the input's floating dtype (float32 or float64); scalar sums
(log-likelihood, gate objective) are accumulated in float64. The inputs are
standardised on the device (and the targets centred), so that the normal
equations stay well conditioned in float32 too.

The starting responsibilities (k-means or random) are computed by the CPU
path's own code, on a host copy of the data, so both paths start from the
same point; a collapsed expert is re-seeded by that code as well (rare: the
responsibilities then make one round trip to the host).
"""

import copy
import math
from typing import NamedTuple

import numpy as np
from sklearn.base import clone

from .._em._loop import EMResult
from .._em._start import (
    dead_experts,
    initial_responsibilities,
    reseed_dead_experts,
    smoothed_gate_targets,
    warn_reseeded,
)
from .._gates._solvers import newton_minimize
from .._validation import validate_fit_data
from ._namespace import (
    array_api_compat,
    cuda_namespace,
    is_cupy_array,
    namespace_and_device,
    to_numpy,
)
from ._numpy import Posterior, Prepared

_LOG_2PI = math.log(2.0 * math.pi)

# Armijo sufficient-decrease constant and most halvings of the Newton step.
_ARMIJO = 1e-4
_MAX_HALVINGS = 30

# Rows per block of the gate Hessian's products, as a budget of bytes for the
# (rows, (n_features + 1) * (n_experts - 1)) temporaries: bounded memory on
# the device at any n.
_HESSIAN_BLOCK_BYTES = 1 << 28


# ---------------------------------------------------------------------------
# Array API kernels (written once; ``xp`` is the namespace)
# ---------------------------------------------------------------------------


def log_softmax(logits, xp):
    """Row-wise log-softmax of an (n, K) array."""
    top = xp.max(logits, axis=1, keepdims=True)
    shifted = logits - top
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def responsibilities(joint, xp):
    """Posterior expert probabilities and per-row log-likelihood.

    ``joint[i, k] = log g_k(x_i) + log p_k(y_i | x_i)``. A row no expert can
    explain (every entry -inf) has no finite posterior: it is spread evenly
    and its log-likelihood is -inf, as on the CPU path.
    """
    top = xp.max(joint, axis=1, keepdims=True)
    finite = xp.isfinite(top)
    top = xp.where(finite, top, xp.zeros_like(top))
    row_ll = top + xp.log(xp.sum(xp.exp(joint - top), axis=1, keepdims=True))
    resp = xp.exp(joint - xp.where(finite, row_ll, xp.zeros_like(row_ll)))
    resp = xp.where(finite, resp, xp.full_like(resp, 1.0 / joint.shape[1]))
    return resp, row_ll[:, 0]


def psd_solve(A, B, xp):
    """Minimum-norm solution of ``A X = B`` for symmetric PSD ``A`` (stacks too).

    By eigendecomposition, with eigenvalues below ``size * eps * largest``
    treated as zero (as ``lstsq`` does): a singular system (a constant
    column, a gate without penalty on separable targets) gets the minimum-norm
    answer instead of inf or NaN, which Array API ``solve`` does not promise.
    """
    eigval, eigvec = xp.linalg.eigh(A)
    eps = xp.finfo(A.dtype).eps
    cutoff = A.shape[-1] * eps * xp.max(eigval, axis=-1, keepdims=True)
    keep = eigval > cutoff
    inv = xp.where(
        keep, 1.0 / xp.where(keep, eigval, xp.ones_like(eigval)), xp.zeros_like(eigval)
    )
    proj = xp.linalg.matrix_transpose(eigvec) @ B
    return eigvec @ (inv[..., None] * proj)


class _DeviceEM:
    """The data of one EM fit on the device, and one iteration's steps.

    ``Z = [(X - x_mean) / x_scale, 1]`` (n, p) is the standardised design
    with an intercept column, shared by the gate and the experts; ``Yc`` the
    targets minus their weighted mean. The gate's free parameters ``theta``
    (p, K - 1) are those of :class:`~skmoe.SoftmaxGate` (``_theta``); expert
    ``k`` predicts ``Z @ C[k] + y_shift`` with ``C`` of shape (K, p, q).
    """

    def __init__(
        self,
        xp,
        device,
        X,
        Y,
        sw,
        *,
        x_mean,
        x_scale,
        y_shift,
        alphas,
        fit_intercepts,
        noise_floor,
        gate_alpha,
        gate_max_iter,
        gate_warm_max_iter=None,
        gate_tol=1e-8,
    ):
        self.xp = xp
        dtype = X.dtype
        self.dtype = dtype

        def put(a):
            return xp.asarray(
                np.asarray(a, dtype=np.float64), dtype=dtype, device=device
            )

        n, d = X.shape
        self.n, self.d, self.p = n, d, d + 1
        self.K = len(alphas)
        self.q = Y.shape[1]
        self.x_mean, self.x_scale = put(x_mean), put(x_scale)
        self.Z = xp.concat(
            [
                (X - self.x_mean) / self.x_scale,
                xp.ones((n, 1), dtype=dtype, device=device),
            ],
            axis=1,
        )
        self.y_shift = put(y_shift)
        self.Yc = Y - self.y_shift
        self.sw = sw
        self.total = float(xp.sum(sw, dtype=xp.float64))
        self.noise_floor = put(noise_floor)
        # the ridge penalty alpha ||beta||^2 on raw coefficients is
        # alpha ||c / x_scale||^2 on the standardised ones
        self.ridge = [
            put(a / np.asarray(x_scale, dtype=np.float64) ** 2) if a > 0 else None
            for a in alphas
        ]
        self.fit_intercepts = fit_intercepts
        self.u = put(np.asarray(x_mean) / np.asarray(x_scale))
        self.gate_alpha = float(gate_alpha)
        self.gate_max_iter = gate_max_iter
        self.gate_warm_max_iter = gate_warm_max_iter
        eps = float(xp.finfo(dtype).eps)
        # Newton stops when half the squared Newton decrement (the predicted
        # decrease of the mean objective) is below the gate's tolerance, as on
        # the CPU; in float32 not below its round-off
        self.newton_tol = max(gate_tol, 0.1 * eps)
        # the penalty falls on the coefficient rows of theta, not the intercepts
        mask = np.ones((self.p, 1))
        mask[-1] = 0.0
        self.penalty_mask = put(mask)
        self.device = device

    # -- gate ------------------------------------------------------------

    def gate_log_proba(self, theta):
        xp = self.xp
        zero = xp.zeros((self.n, 1), dtype=self.dtype, device=self.device)
        return log_softmax(xp.concat([zero, self.Z @ theta], axis=1), xp)

    def gate_penalty(self, theta):
        W = self.penalty_mask * theta
        return 0.5 * self.gate_alpha * float(self.xp.sum(W * W, dtype=self.xp.float64))

    def _gate_objective(self, theta, targets, log_g=None):
        """(log gate, mean penalised cross-entropy) at ``theta``.

        ``log_g``: the log gate at ``theta`` where already known.
        """
        xp = self.xp
        if log_g is None:
            log_g = self.gate_log_proba(theta)
        cross = xp.sum(targets * log_g, axis=1)
        loss = -float(xp.sum(self.sw * cross, dtype=xp.float64))
        return log_g, (loss + self.gate_penalty(theta)) / self.total

    def _gate_derivatives(self, theta, log_g, targets, hessian=True):
        """Gradient (p * (K - 1),) and exact Hessian of the mean objective.

        Without ``hessian``, the gradient and None.

        ``H = sum_i w_i (diag(g_i) - g_i g_i^T) (x) z_i z_i^T`` over the
        non-reference experts, in blocks of rows; the index of
        ``theta[a, k]`` is ``a * (K - 1) + k``, as in ``theta.ravel()``.
        """
        xp = self.xp
        p, K1 = self.p, self.K - 1
        P = p * K1
        g = xp.exp(log_g[:, 1:])
        w = self.sw[:, None]
        dlogits = w * (g - targets[:, 1:])
        grad = self.Z.T @ dlogits + self.gate_alpha * self.penalty_mask * theta
        if not hessian:
            return xp.reshape(grad, (P,)) / self.total, None
        itemsize = 4 if self.dtype == xp.float32 else 8
        block = max(1024, _HESSIAN_BLOCK_BYTES // (P * itemsize))
        outer = xp.zeros((P, P), dtype=self.dtype, device=self.device)
        diag_blocks = xp.zeros((p, P), dtype=self.dtype, device=self.device)
        root_w = xp.sqrt(self.sw)[:, None]
        for start in range(0, self.n, block):
            stop = min(self.n, start + block)
            z = self.Z[start:stop, :]
            m = stop - start
            # sum_i (sqrt(w_i) g_i (x) z_i)(...)^T: the -g g^T part
            B = xp.reshape(
                z[:, :, None] * (g[start:stop, :] * root_w[start:stop, :])[:, None, :],
                (m, P),
            )
            outer = outer + B.T @ B
            # sum_i w_i g_ik z_i z_i^T for every k at once: the diag(g) part
            D = xp.reshape(
                z[:, :, None] * (g[start:stop, :] * w[start:stop, :])[:, None, :],
                (m, P),
            )
            diag_blocks = diag_blocks + z.T @ D
        # diag_blocks[a, b * K1 + k] -> H1[a, k, b, l] = delta_kl (...)
        A = xp.permute_dims(xp.reshape(diag_blocks, (p, p, K1)), (0, 2, 1))
        eye = xp.eye(K1, dtype=self.dtype, device=self.device)
        H = xp.reshape(A[:, :, :, None] * eye[None, :, None, :], (P, P)) - outer
        penalty = xp.reshape(
            self.penalty_mask * xp.ones((p, K1), dtype=self.dtype, device=self.device),
            (P,),
        )
        H = (
            H
            + self.gate_alpha
            * xp.eye(P, dtype=self.dtype, device=self.device)
            * penalty[None, :]
        )
        H = 0.5 * (H + H.T)
        return xp.reshape(grad, (P,)) / self.total, H / self.total

    def fit_gate(self, theta, targets, max_iter=None, log_g=None):
        """Newton's method from ``theta``; returns (theta, log gate, n_iter).

        The engine's shared Newton solver (``skmoe/_gates/_solvers.py``), with
        the exact Hessian and a minimum-norm solve on the device. Each
        accepted step lowers the objective (Armijo), so the gate's M-step
        never lowers the penalised log-likelihood. At most ``max_iter`` steps
        (default ``gate_max_iter``): warm M-steps take as few as
        :class:`SoftmaxGate`'s ``warm_max_iter``, as on the CPU. ``log_g``:
        the log gate at ``theta`` (the E-step's), where known.
        """
        xp = self.xp
        if self.K == 1:
            return theta, self._gate_objective(theta, targets, log_g)[0], 0
        shape = theta.shape
        # the point of the last evaluation and the log gate there
        last = {"at": None, "log_g": None}

        def objective(flat, first=False):
            point = xp.reshape(flat, shape)
            log_gate, loss = self._gate_objective(
                point, targets, log_g if first else None
            )
            last["at"], last["log_g"] = flat, log_gate
            grad, _ = self._gate_derivatives(point, log_gate, targets, hessian=False)
            return loss, grad

        def hessian_solver(flat):
            point = xp.reshape(flat, shape)
            log_gate = last["log_g"] if last["at"] is flat else None
            if log_gate is None:
                log_gate = self.gate_log_proba(point)
            _, H = self._gate_derivatives(point, log_gate, targets)
            return lambda b: psd_solve(H, b[:, None], xp)[:, 0]

        flat, n_iter, _ = newton_minimize(
            objective,
            hessian_solver,
            xp.reshape(theta, (-1,)),
            max_iter=self.gate_max_iter if max_iter is None else max_iter,
            tol=self.newton_tol,
        )
        theta = xp.reshape(flat, shape)
        log_gate = last["log_g"] if last["at"] is flat else self.gate_log_proba(theta)
        return theta, log_gate, n_iter

    # -- experts ---------------------------------------------------------

    def fit_experts(self, weights):
        """Weighted least squares for every expert: C (K, p, q)."""
        xp = self.xp
        d = self.d
        A_all, B_all, shifts = [], [], []
        for k in range(self.K):
            Zw = self.Z * weights[:, k : k + 1]
            S = self.Z.T @ Zw  # [[X^T W X, X^T w], [w^T X, sum w]] (standardised)
            Sy = Zw.T @ self.Yc  # [X^T W y; w^T y]
            Sxx, s, w_sum = S[:d, :d], S[:d, d], S[d, d]
            Sxy, wy = Sy[:d, :], Sy[d, :]
            if self.fit_intercepts[k]:
                # centre on the expert's own weighted mean (a rank-one update)
                dx, dy = s / w_sum, wy / w_sum
                A = Sxx - w_sum * dx[:, None] * dx[None, :]
                B = Sxy - w_sum * dx[:, None] * dy[None, :]
            else:
                # no intercept: the model lives at the raw origin, which is
                # -x_mean / x_scale in standardised coordinates
                u, ys = self.u, self.y_shift
                A = Sxx + u[:, None] * s[None, :] + s[:, None] * u[None, :]
                A = A + w_sum * u[:, None] * u[None, :]
                B = Sxy + s[:, None] * ys[None, :] + u[:, None] * wy[None, :]
                B = B + w_sum * u[:, None] * ys[None, :]
                dx, dy = None, None
            if self.ridge[k] is not None:
                A = (
                    A
                    + xp.eye(d, dtype=self.dtype, device=self.device)
                    * self.ridge[k][None, :]
                )
            A_all.append(0.5 * (A + A.T))
            B_all.append(B)
            shifts.append((dx, dy))
        coef = psd_solve(xp.stack(A_all), xp.stack(B_all), xp)  # (K, d, q)
        C = []
        for k in range(self.K):
            dx, dy = shifts[k]
            if dx is not None:
                intercept = dy - dx @ coef[k, :, :]
            else:
                intercept = self.u @ coef[k, :, :] - self.y_shift
            C.append(xp.concat([coef[k, :, :], intercept[None, :]], axis=0))
        return xp.stack(C)

    def expert_means(self, C):
        """Centred expert predictions, shape (n, K, q)."""
        xp = self.xp
        flat = xp.reshape(xp.permute_dims(C, (1, 0, 2)), (self.p, self.K * self.q))
        return xp.reshape(self.Z @ flat, (self.n, self.K, self.q))

    def noise_variance(self, means, weights):
        xp = self.xp
        sq = (self.Yc[:, None, :] - means) ** 2
        n_eff = xp.sum(weights, axis=0)
        var = xp.sum(weights[:, :, None] * sq, axis=0) / n_eff[:, None]
        return xp.maximum(var, self.noise_floor[None, :])

    def e_step(self, log_g, means, var):
        """(resp, row_ll) from the gate's log-probabilities and the experts."""
        xp = self.xp
        quad = xp.sum((self.Yc[:, None, :] - means) ** 2 / var[None, :, :], axis=2)
        log_norm = xp.sum(xp.log(var), axis=1) + self.q * _LOG_2PI
        log_prob = -0.5 * (quad + log_norm[None, :])
        return responsibilities(log_g + log_prob, xp)

    def n_eff(self, resp):
        xp = self.xp
        return to_numpy(xp.sum(self.sw[:, None] * resp, axis=0)).astype(np.float64)

    def log_likelihood(self, row_ll):
        return float(self.xp.sum(self.sw * row_ll, dtype=self.xp.float64))


# ---------------------------------------------------------------------------
# the fit
# ---------------------------------------------------------------------------


def _namespace_for(estimator, X):
    """(xp, device, X already there) for this fit; clear errors for CUDA."""
    if is_cupy_array(X):
        xp, device = namespace_and_device(X)
        return xp, device, True
    if estimator.device == "cuda":
        xp, device = cuda_namespace()
        return xp, device, False
    xp, device = namespace_and_device(X)
    return xp, device, True


class DeviceState(NamedTuple):
    """The mixture's parameters in the device's coordinates (see _DeviceEM).

    ``theta`` the gate's free block, ``C`` (K, p, q) the experts on the
    standardised design, ``var`` (K, q) their noise variances; ``gate_iter``
    the Newton steps of the last gate fit.
    """

    theta: object
    C: object
    var: object
    gate_iter: int = 0


class ArrayAPIBackend:
    """EM's statistics on an Array API device (linear experts, linear gate).

    Parameters
    ----------
    em : _DeviceEM
        The data on the device and one iteration's steps.
    host : tuple of (X, Y, sample_weight)
        Host copies (float64), for the starts and the rare re-seeding.
    likelihood : GaussianLikelihood
    templates : list of LinearRegression or Ridge
    make_gate : callable
    scaling : tuple of (x_mean, x_scale, y_shift)
        The device coordinates, to map parameters back to the host.
    """

    def __init__(self, em, host, likelihood, templates, make_gate, scaling):
        self.em = em
        self.host = host
        self.likelihood = likelihood
        self.templates = templates
        self.make_gate = make_gate
        self.scaling = scaling
        self.total_weight = em.total
        self._handed = None  # (state, means, log gate) of the last M-step
        self._e_step_gate = None  # (state, log gate) of the last E-step

    def fresh(self):
        backend = copy.copy(self)
        backend._handed = backend._e_step_gate = None
        return backend

    def _put(self, a):
        em = self.em
        return em.xp.asarray(
            np.asarray(a, dtype=np.float64), dtype=em.dtype, device=em.device
        )

    def warm_state(self, estimator):
        """A fitted estimator's parameters in the device's coordinates."""
        x_mean, x_scale, y_shift = self.scaling
        em = self.em
        C = []
        for est in estimator.experts_:
            coef = np.asarray(est.coef_, dtype=np.float64).reshape(em.q, em.d).T
            intercept = np.asarray(est.intercept_, dtype=np.float64).reshape(em.q)
            C.append(
                np.vstack(
                    [coef * x_scale[:, None], intercept + x_mean @ coef - y_shift]
                )
            )
        return DeviceState(
            self._put(estimator.gate_._theta),
            self._put(np.stack(C)),
            self._put(self.likelihood.scale_of(estimator)),
        )

    def start(self, init, restart, random_state, gate_seed):
        em = self.em
        X, Y, sw = self.host
        resp = initial_responsibilities(
            X, self.likelihood.kmeans_columns(Y), sw, em.K, init, restart, random_state
        )
        theta = em.xp.zeros((em.p, em.K - 1), dtype=em.dtype, device=em.device)
        row_ll = em.xp.zeros((em.n,), dtype=em.dtype, device=em.device)
        return DeviceState(theta, None, None), Posterior(self._put(resp), row_ll)

    def assign(self, posterior, training, random_state):
        return posterior  # soft EM only (see the capability table)

    def reseed(self, posterior):
        em = self.em
        if not dead_experts(em.n_eff(posterior.resp), em.total).size:
            return posterior
        # rare: the in-memory backend's own re-seeding, on host copies
        sw = self.host[2]
        resp, dead = reseed_dead_experts(
            to_numpy(posterior.resp).astype(np.float64),
            to_numpy(posterior.row_ll).astype(np.float64),
            sw,
        )
        if dead.size:
            warn_reseeded(dead, stacklevel=4)
        return Posterior(self._put(resp), posterior.row_ll)

    def m_step(self, state, posterior, warm_gate):
        em = self.em
        resp = posterior.resp
        weights = resp * em.sw[:, None]
        C = em.fit_experts(weights)
        means = em.expert_means(C)
        var = em.noise_variance(means, weights)
        gate_steps = None
        if warm_gate and em.gate_warm_max_iter is not None:
            gate_steps = min(em.gate_max_iter, em.gate_warm_max_iter)
        # the E-step's log gate is the gate's at theta: no pass to recompute
        handed = self._e_step_gate
        log_g = handed[1] if handed is not None and handed[0] is state else None
        if not warm_gate:
            # a run's first gate fit: targets it cannot separate exactly
            resp = smoothed_gate_targets(resp)
        theta, log_g, gate_iter = em.fit_gate(state.theta, resp, gate_steps, log_g)
        new = DeviceState(theta, C, var, gate_iter)
        self._handed = (new, means, log_g)
        return new

    def e_step(self, state):
        em = self.em
        handed = self._handed
        if handed is not None and handed[0] is state:
            _, means, log_g = handed
        else:
            log_g = em.gate_log_proba(state.theta)
            means = em.expert_means(state.C)
        self._e_step_gate = (state, log_g)
        return Posterior(*em.e_step(log_g, means, state.var))

    def log_likelihood(self, posterior):
        return self.em.log_likelihood(posterior.row_ll)

    def classification_log_likelihood(self, posterior):  # pragma: no cover
        raise NotImplementedError("the Array API path is soft EM")

    def penalty(self, state):
        return self.em.gate_penalty(state.theta)

    def result(self, state, posterior, *, curves, n_iter, converged):
        """The :class:`EMResult`, its parameters as NumPy float64 on the host."""
        em = self.em
        xp = em.xp
        x_mean, x_scale, y_shift = self.scaling
        theta = to_numpy(state.theta).astype(np.float64)
        C = to_numpy(state.C).astype(np.float64)  # (K, p, q)
        var = to_numpy(state.var).astype(np.float64)
        d = x_mean.shape[0]
        y_is_1d = self.likelihood.y_is_1d
        experts = []
        for k, template in enumerate(self.templates):
            slope = C[k, :d, :]
            coef = slope / x_scale[:, None]
            if template.fit_intercept:
                intercept = C[k, d, :] + y_shift - (x_mean / x_scale) @ slope
            else:  # zero by construction, up to round-off of the conversion
                intercept = np.zeros(C.shape[2])
            est = clone(template)
            est.coef_ = coef[:, 0] if y_is_1d else coef.T.copy()
            est.intercept_ = float(intercept[0]) if y_is_1d else intercept
            est.n_features_in_ = d
            experts.append(est)
        gate = self.make_gate(0)
        gate._mean, gate._scale = x_mean, x_scale
        gate._theta = theta
        gate.n_iter_ = state.gate_iter
        gate._set_public()
        resp, row_ll = posterior
        g = xp.exp(em.gate_log_proba(state.theta))
        w = em.sw / xp.sum(em.sw)
        summary = {
            "mean_gate": to_numpy(w @ g).astype(np.float64),
            "effective_samples": to_numpy(em.sw @ resp).astype(np.float64),
            "log_likelihood": to_numpy((em.sw * row_ll) @ resp).astype(np.float64),
        }
        return EMResult(
            experts=experts,
            gate=gate,
            scale=var,
            log_likelihood=self.log_likelihood(posterior),
            log_likelihood_curve=np.asarray(curves[0]),
            objective_curve=np.asarray(curves[1]),
            n_iter=n_iter,
            converged=converged,
            summary=summary,
        )


def _weighted_scaler(X, sw, xp):
    """Weighted mean and standard deviation of the columns, as NumPy float64.

    The maths of ``SoftmaxGate._init_scaler``, computed where the data are:
    a column whose spread is at most ``1e-12`` of its magnitude (float64) is
    constant and keeps scale 1; for float32 the bound is as many float32
    ulps (about 5e-4), or a constant column's round-off would be blown up
    to unit spread.
    """
    w = sw / xp.sum(sw)
    mean = w @ X
    std = xp.sqrt(w @ (X - mean) ** 2)
    relative = 1e-12 * float(xp.finfo(X.dtype).eps) / np.finfo(np.float64).eps
    mean, std = to_numpy(mean).astype(np.float64), to_numpy(std).astype(np.float64)
    std[std <= relative * np.abs(mean)] = 1.0
    return mean, std


def prepare_array_api(estimator, X, y, sample_weight, *, warm, xp=None):
    """Validate on host copies and move the data to the device; see ``Prepared``.

    Validation is the in-memory path's, on host copies of the inputs; the EM
    iterations then run on the device of ``X`` (or on the GPU for
    ``device="cuda"``). ``xp``, as in scikit-learn's ``get_namespace(...,
    xp=None)``, forces a namespace (on its default device), whatever the
    inputs: the tests run this path on NumPy with
    ``xp=array_api_compat.numpy``.
    """
    if xp is None:
        xp, device, X_on_device = _namespace_for(estimator, X)
    else:
        device, X_on_device = None, False
    # host copies, for validation and the (CPU) starting responsibilities
    X_host, y_host, sw, attributes = validate_fit_data(
        estimator,
        to_numpy(X),
        to_numpy(y),
        to_numpy(sample_weight),
        reset=not warm,
        dtype=[np.float64, np.float32],
    )
    dtype = xp.float32 if X_host.dtype == np.float32 else xp.float64
    X64 = np.asarray(X_host, dtype=np.float64)
    likelihood, Y = estimator._likelihood_for(y_host, sw)
    if X_on_device and array_api_compat.is_array_api_obj(X):
        X_dev = xp.astype(X, dtype) if X.dtype != dtype else X
    else:
        X_dev = xp.asarray(X_host, dtype=dtype, device=device)
    sw_dev = xp.asarray(sw, dtype=dtype, device=device)
    if warm:
        x_mean, x_scale = estimator.gate_._mean, estimator.gate_._scale
    else:
        # SoftmaxGate's standardisation, computed on the device
        x_mean, x_scale = _weighted_scaler(X_dev, sw_dev, xp)
    y_shift = (sw / sw.sum()) @ Y
    Y_dev = xp.asarray(Y, dtype=dtype, device=device)

    def build(*, templates, expert_info, make_gate, n_jobs, tree_branching):
        gate = make_gate(0)
        em = _DeviceEM(
            xp,
            device,
            X_dev,
            Y_dev,
            sw_dev,
            x_mean=x_mean,
            x_scale=x_scale,
            y_shift=y_shift,
            alphas=expert_info,
            fit_intercepts=[bool(t.fit_intercept) for t in templates],
            noise_floor=likelihood.noise_floor,
            gate_alpha=gate.alpha,
            gate_max_iter=gate.max_iter,
            gate_warm_max_iter=gate.warm_max_iter,
            gate_tol=gate.tol,
        )
        return ArrayAPIBackend(
            em,
            (X64, Y, sw),
            likelihood,
            templates,
            make_gate,
            (x_mean, x_scale, y_shift),
        )

    return Prepared(likelihood, attributes, int(np.count_nonzero(sw)), build)


def fit_array_api(estimator, X, y, sample_weight=None, *, xp=None):
    """Fit ``estimator`` (a MixtureOfExpertsRegressor) on the Array API path.

    As ``estimator.fit`` on Array API inputs, with ``xp`` forcing the
    namespace (see :func:`prepare_array_api`); returns ``estimator`` with
    NumPy fitted attributes.
    """
    estimator._validate_params()
    return estimator._fit(X, y, sample_weight, path="array_api", namespace=xp)
