"""Gradient training: gate and experts fitted jointly on -log p(y | x).

The 1991 mixture of experts was trained by gradient descent on the negative
log-likelihood of the whole mixture, not by EM. ``training="gradient"``
minimises

    -sum_i w_i log sum_k g_k(x_i) p_k(y_i | x_i) + penalties

over the gate and the experts at once, for experts whose parameters skmoe
owns: linear-Gaussian experts (LinearRegression, Ridge) for regression, with
each expert's log noise variance, and multinomial-logistic experts
(LogisticRegression) for classification. Full-batch L-BFGS-B
(``gradient_solver="lbfgs"``) or mini-batch Adam (``"adam"``).

All parameters live on standardised inputs (and, for regression, targets)
while optimising, with the gate's own standardisation, so the problem is well
conditioned whatever the units; they are mapped back into fitted sklearn
experts and a :class:`SoftmaxGate` at the end, the same kinds of fitted
attributes EM leaves.

Penalties, on the scale of the summed log-likelihood as in EM:

- the gate: ``gate_alpha / 2 * ||W||^2`` on its standardised coefficients,
  as :class:`SoftmaxGate` (not on the intercepts);
- a Ridge expert ``k``: ``alpha * ||coef_ko||^2 / (2 sigma_ko^2)`` per
  output ``o``, the Gaussian prior ``N(0, sigma_ko^2 / alpha)`` on its
  coefficients, whose coefficient update given the responsibilities is
  exactly the weighted Ridge fit of the EM M-step;
- a LogisticRegression expert: ``||coef||^2 / (2 C)``, scikit-learn's own
  penalty (on the raw coefficients, not the intercepts).
"""

import copy
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from .._kernels import (
    gaussian_moe_gradient,
    logistic_moe_gradient,
    single_threaded_blas,
)
from .._scaling import weighted_standardisation
from ._loop import EMSettings

# Adam's constants, as in sklearn's MLP (beta_1, beta_2, epsilon). A constant
# step leaves Adam hovering about the optimum at a distance set by the step:
# as sklearn MLP's "adaptive" schedule does for SGD, the step is divided by
# _ADAM_STEP_DIVISOR after _ADAM_PATIENCE epochs that do not lower the
# objective by tol, and training stops after _ADAM_MAX_DIVISIONS divisions.
_ADAM_BETA1, _ADAM_BETA2, _ADAM_EPSILON = 0.9, 0.999, 1e-8
_ADAM_PATIENCE, _ADAM_STEP_DIVISOR, _ADAM_MAX_DIVISIONS = 2, 5.0, 4

# The experts' noise variances are bounded above by this many times the
# targets' variance (a variance beyond it means the expert explains nothing).
_MAX_NOISE_RATIO = 1e6


@dataclass(frozen=True)
class GradientSettings(EMSettings):
    """:class:`EMSettings` and the optimiser's own."""

    training: str = "gradient"
    solver: str = "lbfgs"
    batch_size: object = "auto"
    learning_rate_init: float = 1e-2


class _Problem:
    """The joint objective on standardised inputs, over one flat vector.

    The vector holds the gate's free block ``theta`` (n_features + 1,
    n_experts - 1) as in :class:`SoftmaxGate`, then the experts'
    coefficients ``B`` (n_features, n_experts, n_out) and intercepts ``c``
    (n_experts, n_out) on the standardised inputs, then (regression) the log
    noise variances (n_experts, n_outputs) of the standardised targets.
    """

    def __init__(
        self,
        Xs,
        x_mean,
        x_scale,
        sample_weight,
        n_experts,
        n_out,
        penalties,
        fit_intercept,
        gate_alpha,
        n_extra,
    ):
        self.Xs = Xs
        self.sample_weight = sample_weight
        self.total = float(sample_weight.sum())
        self.x_scale = x_scale
        # an expert without intercept has, on standardised inputs, the
        # intercept ``shift @ B + offset`` (see ``_tied_intercepts``)
        self.shift = x_mean / x_scale
        self.K = n_experts
        self.n_out = n_out
        self.penalties = np.asarray(penalties, dtype=float)
        self.tied = np.flatnonzero(~np.asarray(fit_intercept, dtype=bool))
        self.gate_alpha = float(gate_alpha)
        d = Xs.shape[1]
        sizes = [(d + 1) * (n_experts - 1), d * n_experts * n_out, n_experts * n_out]
        self.bounds = np.cumsum([0, *sizes, n_extra])
        self.d = d

    def unpack(self, flat):
        d, K, Q = self.d, self.K, self.n_out
        b = self.bounds
        theta = flat[b[0] : b[1]].reshape(d + 1, K - 1)
        B = flat[b[1] : b[2]].reshape(d, K, Q)
        c = flat[b[2] : b[3]].reshape(K, Q).copy()
        c[self.tied] = self._tied_intercepts(B)
        return theta, B, c, flat[b[3] : b[4]]

    def _tied_intercepts(self, B):
        return np.einsum("j,jkq->kq", self.shift, B[:, self.tied]) + self.offset

    def pack(self, theta, B, c, extra):
        return np.concatenate([theta.ravel(), B.ravel(), c.ravel(), extra.ravel()])

    def data_term(self, flat, rows=None):
        """Loss ``-sum_i w_i log p(y_i | x_i)`` on ``rows`` and its gradient."""
        theta, B, c, extra = self.unpack(flat)
        Xs = self.Xs if rows is None else self.Xs[rows]
        sw = self.sample_weight if rows is None else self.sample_weight[rows]
        m, d, K, Q = Xs.shape[0], self.d, self.K, self.n_out
        gate_logits = np.zeros((m, K))
        gate_logits[:, 1:] = Xs @ theta[:-1] + theta[-1]
        outputs = (Xs @ B.reshape(d, K * Q)).reshape(m, K, Q) + c
        loss, d_gate, d_out, d_extra = self._kernel(
            gate_logits, outputs, rows, extra, sw
        )
        d_gate = d_gate[:, 1:]
        grad_theta = np.vstack([Xs.T @ d_gate, d_gate.sum(axis=0)])
        grad_B = (Xs.T @ d_out.reshape(m, K * Q)).reshape(d, K, Q)
        grad_c = d_out.sum(axis=0)
        # chain rule through the tied intercepts
        grad_B[:, self.tied] += np.einsum("j,kq->jkq", self.shift, grad_c[self.tied])
        grad_c[self.tied] = 0.0
        return loss, self.pack(grad_theta, grad_B, grad_c, d_extra)

    def penalty(self, flat):
        """The penalties (gate, experts) and their gradient."""
        theta, B, _, extra = self.unpack(flat)
        grad = np.zeros_like(flat)
        g_theta = grad[self.bounds[0] : self.bounds[1]].reshape(theta.shape)
        W = theta[:-1]
        g_theta[:-1] = self.gate_alpha * W
        value = 0.5 * self.gate_alpha * float(np.sum(W * W))
        g_B = grad[self.bounds[1] : self.bounds[2]].reshape(B.shape)
        g_extra = grad[self.bounds[3] : self.bounds[4]].reshape(extra.shape)
        # raw coefficients are B / x_scale (times a per-output factor that
        # the expert penalty below absorbs)
        raw_sq = (B / self.x_scale[:, None, None]) ** 2
        v, gB, gx = self._expert_penalty(raw_sq, B, extra)
        g_B += gB
        g_extra += gx
        return value + v, grad

    def objective(self, flat):
        """Penalised loss per unit weight and its gradient (for L-BFGS)."""
        loss, grad = self.data_term(flat)
        pen, pen_grad = self.penalty(flat)
        return (loss + pen) / self.total, (grad + pen_grad) / self.total


class _GaussianProblem(_Problem):
    """Linear-Gaussian experts; the extra parameters are log-variances."""

    def __init__(self, Xs, Ys, y_mean, y_scale, log_var_floor, **kwargs):
        n_outputs = Ys.shape[1]
        super().__init__(
            Xs, n_out=n_outputs, n_extra=kwargs["n_experts"] * n_outputs, **kwargs
        )
        self.Ys = Ys
        self.offset = -y_mean / y_scale
        self.log_var_floor = log_var_floor

    def _kernel(self, gate_logits, outputs, rows, extra, sw):
        Ys = self.Ys if rows is None else self.Ys[rows]
        log_var = extra.reshape(self.K, self.n_out)
        loss, d_gate, d_means, d_log_var = gaussian_moe_gradient(
            gate_logits, outputs, Ys, log_var, sw
        )
        return loss, d_gate, d_means, d_log_var

    def _expert_penalty(self, raw_sq, B, extra):
        log_var = extra.reshape(self.K, self.n_out)
        inv_var = np.exp(-log_var)
        alpha = self.penalties[None, :, None]
        scale_sq = (self.x_scale**2)[:, None, None]
        per = 0.5 * self.penalties[:, None] * raw_sq.sum(axis=0) * inv_var
        grad_B = alpha * B / scale_sq * inv_var[None]
        return float(per.sum()), grad_B, -per.ravel()

    def lower_bounds(self):
        low = np.full(self.bounds[-1], -np.inf)
        low[self.bounds[3] :] = np.tile(self.log_var_floor, self.K)
        return low

    def upper_bounds(self):
        # no expert's noise above 1e6 times the (standardised) targets'
        # variance: beyond, exp(log_var) overflows on the way to nothing
        high = np.full(self.bounds[-1], np.inf)
        high[self.bounds[3] :] = np.log(_MAX_NOISE_RATIO)
        return high


class _LogisticProblem(_Problem):
    """Multinomial-logistic experts; a binary expert has one logit column."""

    def __init__(self, Xs, codes, n_classes, **kwargs):
        self.n_classes = n_classes
        n_out = 1 if n_classes == 2 else n_classes
        super().__init__(Xs, n_out=n_out, n_extra=0, **kwargs)
        self.codes = codes
        self.offset = 0.0

    def _kernel(self, gate_logits, outputs, rows, extra, sw):
        codes = self.codes if rows is None else self.codes[rows]
        if self.n_classes == 2:
            # sklearn's binary model: logit 0 for class 0, the expert's for 1
            full = np.zeros(outputs.shape[:2] + (2,))
            full[:, :, 1] = outputs[:, :, 0]
        else:
            full = outputs
        loss, d_gate, d_full = logistic_moe_gradient(gate_logits, full, codes, sw)
        d_out = d_full[:, :, 1:] if self.n_classes == 2 else d_full
        return loss, d_gate, d_out, np.empty(0)

    def _expert_penalty(self, raw_sq, B, extra):
        lam = self.penalties[None, :, None]
        scale_sq = (self.x_scale**2)[:, None, None]
        value = 0.5 * float(np.sum(self.penalties[:, None] * raw_sq.sum(axis=0)))
        return value, lam * B / scale_sq, np.zeros(0)

    def lower_bounds(self):
        return np.full(self.bounds[-1], -np.inf)

    def upper_bounds(self):
        return np.full(self.bounds[-1], np.inf)


def _regression_start(state, problem, x_mean, x_scale, y_mean, y_scale):
    """Flat parameters of the current experts and noise variances."""
    d, K, q = problem.d, problem.K, problem.n_out
    B = np.zeros((d, K, q))
    c = np.zeros((K, q))
    for k, est in enumerate(state.experts):
        coef = np.asarray(est.coef_, dtype=float).reshape(q, d)
        intercept = np.broadcast_to(np.asarray(est.intercept_, dtype=float), (q,))
        B[:, k, :] = (coef * x_scale).T / y_scale
        c[k] = (intercept + coef @ x_mean - y_mean) / y_scale
    log_var = np.log(state.scale / y_scale**2)
    log_var = np.maximum(log_var, problem.log_var_floor)
    return B, c, log_var


def _classification_start(state, problem, Y, weights, x_mean, x_scale):
    """Flat parameters of the current experts.

    An expert that is not a LogisticRegression over all classes (EM's
    M-step leaves a DummyClassifier where its rows held one class) starts
    flat, at its weighted class frequencies.
    """
    d, K, Q = problem.d, problem.K, problem.n_out
    C = problem.n_classes
    B = np.zeros((d, K, Q))
    c = np.zeros((K, Q))
    for k, est in enumerate(state.experts):
        if isinstance(est, LogisticRegression) and np.array_equal(
            est.classes_, np.arange(C)
        ):
            coef = np.asarray(est.coef_, dtype=float)  # (Q, d)
            B[:, k, :] = (coef * x_scale).T
            c[k] = est.intercept_ + coef @ x_mean
        else:
            counts = np.bincount(Y, weights=weights[:, k], minlength=C) + 1.0
            log_freq = np.log(counts / counts.sum())
            c[k] = log_freq[1:] - log_freq[0] if C == 2 else log_freq
    return B, c, np.zeros(0)


def _to_regression_experts(
    templates, y_is_1d, problem, flat, x_mean, x_scale, y_mean, y_scale
):
    theta, B, c, extra = problem.unpack(flat)
    experts = []
    for k, template in enumerate(templates):
        coef = (B[:, k, :] / x_scale[:, None] * y_scale).T  # (q, d)
        intercept = y_mean + y_scale * c[k] - coef @ x_mean
        if not template.fit_intercept:
            intercept = np.zeros_like(intercept)
        est = clone(template)
        est.coef_ = coef[0] if y_is_1d else coef
        est.intercept_ = float(intercept[0]) if y_is_1d else intercept
        est.n_features_in_ = problem.d
        experts.append(est)
    var = np.exp(extra.reshape(problem.K, problem.n_out)) * y_scale**2
    return theta, experts, var


def _to_classification_experts(templates, problem, flat, x_mean, x_scale, n_iter):
    theta, B, c, _ = problem.unpack(flat)
    experts = []
    for k, template in enumerate(templates):
        coef = (B[:, k, :] / x_scale[:, None]).T  # (Q, d)
        intercept = c[k] - coef @ x_mean
        if not template.fit_intercept:
            intercept = np.zeros_like(intercept)
        est = clone(template)
        est.classes_ = np.arange(problem.n_classes)
        est.coef_ = coef
        est.intercept_ = intercept
        est.n_features_in_ = problem.d
        est.n_iter_ = np.array([n_iter], dtype=np.int32)
        experts.append(est)
    return theta, experts, None


def _lbfgs(problem, flat0, max_iter, tol, log_lik):
    """Full-batch L-BFGS-B; returns (flat, curve, objectives, n_iter, converged).

    ``curve`` holds the log-likelihood after each iteration, ``objectives``
    the penalised log-likelihood that is maximised.
    """
    curve, objectives = [], []

    def callback(intermediate_result):
        x = intermediate_result.x
        pen = problem.penalty(x)[0]
        curve.append(log_lik(pen - intermediate_result.fun * problem.total))
        objectives.append(log_lik(-intermediate_result.fun * problem.total))

    low, high = problem.lower_bounds(), problem.upper_bounds()
    bounds = [
        (lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
        for lo, hi in zip(low, high, strict=True)
    ]
    result = minimize(
        problem.objective,
        np.clip(flat0, low, high),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        callback=callback,
        # ftol: relative change of the objective per unit weight, as EM's
        # tol; gtol tiny so that ftol decides
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-12},
    )
    return result.x, curve, objectives, int(result.nit), bool(result.status == 0)


def _adam(problem, flat0, settings, random_state, log_lik):
    """Mini-batch Adam on shuffled rows; returns (flat, curve, objectives,
    n_iter, converged), the curves as for :func:`_lbfgs`.

    Each step follows the mini-batch loss per unit weight plus the penalties
    per unit of the total weight, an unbiased estimate of the full
    objective's gradient. After each epoch the full objective is evaluated
    for the curve and the step schedule (see ``_ADAM_PATIENCE``); the
    parameters of the best epoch are returned.
    """
    n = problem.Xs.shape[0]
    batch = (
        min(200, n) if settings.batch_size == "auto" else min(settings.batch_size, n)
    )
    low, high = problem.lower_bounds(), problem.upper_bounds()
    flat = np.clip(flat0, low, high)
    m1 = np.zeros_like(flat)
    m2 = np.zeros_like(flat)
    lr = float(settings.learning_rate_init)
    step = 0
    curve, objectives = [], []
    # the start is the first candidate: a step too large for the problem
    # then returns the start, not a diverged model (and says it did not
    # converge), rather than the best of epochs that only made it worse
    best = float(problem.objective(flat)[0])
    best_flat, improved = flat, False
    no_change, divisions, converged = 0, 0, False
    for _ in range(settings.max_iter):
        order = random_state.permutation(n)
        for start in range(0, n, batch):
            rows = np.sort(order[start : start + batch])
            batch_weight = problem.sample_weight[rows].sum()
            if not batch_weight > 0:
                continue
            loss, grad = problem.data_term(flat, rows)
            pen_grad = problem.penalty(flat)[1]
            grad = grad / batch_weight + pen_grad / problem.total
            step += 1
            m1 = _ADAM_BETA1 * m1 + (1 - _ADAM_BETA1) * grad
            m2 = _ADAM_BETA2 * m2 + (1 - _ADAM_BETA2) * grad**2
            rate = lr * np.sqrt(1 - _ADAM_BETA2**step) / (1 - _ADAM_BETA1**step)
            flat = np.clip(flat - rate * m1 / (np.sqrt(m2) + _ADAM_EPSILON), low, high)
        loss = problem.data_term(flat)[0]
        pen = problem.penalty(flat)[0]
        curve.append(log_lik(-loss))
        objectives.append(log_lik(-loss - pen))
        objective = (loss + pen) / problem.total
        no_change = no_change + 1 if objective > best - settings.tol else 0
        if objective < best:
            best, best_flat, improved = objective, flat.copy(), True
        if no_change >= _ADAM_PATIENCE:
            if divisions == _ADAM_MAX_DIVISIONS:
                converged = True
                break
            lr /= _ADAM_STEP_DIVISOR
            divisions += 1
            no_change = 0
    return best_flat, curve, objectives, len(curve), converged and improved


def run_gradient(backend, settings, random_state, restart=0, warm_state=None):
    """One gradient-training run on the in-memory ``backend``.

    Starts where EM starts (the initial responsibilities, one M-step) or,
    from ``warm_state``, from a fitted model; then minimises the joint
    objective. Returns an :class:`EMResult`, as :func:`run_em` does: the
    log-likelihood curve, the penalised objective's curve, the iterations
    (L-BFGS iterations or Adam epochs) and whether the optimiser converged.
    """
    backend = backend.fresh()
    likelihood = backend.likelihood
    is_classifier = likelihood.is_classifier
    X, Y, sample_weight = backend.X, backend.Y, backend.sample_weight
    templates = backend.templates
    if warm_state is None:
        # the gate is linear (its seed unused): no draw for it, the start's
        # draws come first
        state, posterior = backend.start(settings.init, restart, random_state, 0)
        posterior = backend.reseed(posterior)
        # the joint optimisation starts from the M-step on the start as it is
        backend.smooth_first_gate = False
        state = backend.m_step(state, posterior, False)
        resp = posterior.resp
    else:
        state = warm_state
        resp = backend.e_step(state).resp
    gate = copy.deepcopy(state.gate)
    x_mean, x_scale = gate._mean, gate._scale
    Xs = (X - x_mean) / x_scale
    common = {
        "x_mean": x_mean,
        "x_scale": x_scale,
        "sample_weight": sample_weight,
        "n_experts": backend.n_experts,
        "penalties": backend.expert_info,
        "fit_intercept": [t.fit_intercept for t in templates],
        "gate_alpha": gate.alpha,
    }
    log_norm = 0.0
    if is_classifier:
        problem = _LogisticProblem(Xs, Y, likelihood.classes.size, **common)
        B, c, extra = _classification_start(
            state, problem, Y, resp * sample_weight[:, None], x_mean, x_scale
        )
    else:
        y_mean, y_scale = weighted_standardisation(Y, sample_weight)
        # the floor on the noise variance, in the standardised targets
        log_var_floor = np.log(likelihood.noise_floor / y_scale**2)
        problem = _GaussianProblem(
            Xs, (Y - y_mean) / y_scale, y_mean, y_scale, log_var_floor, **common
        )
        B, c, extra = _regression_start(
            state, problem, x_mean, x_scale, y_mean, y_scale
        )
        # densities of standardised targets differ by the Jacobian
        log_norm = -sample_weight.sum() * float(np.sum(np.log(y_scale)))
    flat0 = problem.pack(gate._theta, B, c, extra)

    def log_lik(standardised):
        return standardised + log_norm

    # the kernels parallelise themselves; BLAS threads would fight them
    with single_threaded_blas():
        if settings.solver == "lbfgs":
            flat, curve, objectives, n_iter, converged = _lbfgs(
                problem, flat0, settings.max_iter, settings.tol, log_lik
            )
        else:
            flat, curve, objectives, n_iter, converged = _adam(
                problem, flat0, settings, random_state, log_lik
            )
    if is_classifier:
        theta, experts, scale = _to_classification_experts(
            templates, problem, flat, x_mean, x_scale, n_iter
        )
    else:
        theta, experts, scale = _to_regression_experts(
            templates,
            likelihood.y_is_1d,
            problem,
            flat,
            x_mean,
            x_scale,
            y_mean,
            y_scale,
        )
    gate._theta = theta.copy()
    gate._set_public()
    gate.n_iter_ = n_iter
    state = type(state)(experts, gate, scale)
    posterior = backend.e_step(state)
    # the exact log-likelihood of the fitted model ends the curve
    final = backend.log_likelihood(posterior)
    # a solver that ran into non-finite values did not converge, whatever
    # its own criterion said
    converged = converged and bool(np.isfinite(final) and np.all(np.isfinite(flat)))
    curve = curve[:-1] + [final] if curve else [final]
    objectives = objectives[:-1] + [final - problem.penalty(flat)[0]]
    return backend.result(
        state, posterior, curves=(curve, objectives), n_iter=n_iter, converged=converged
    )
