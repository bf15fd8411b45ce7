"""The linear softmax gate, and its M-step on one data set.

:class:`SoftmaxGate` holds only its parameters. :class:`SoftmaxGateFit` is
the gate's M-step over fixed inputs and row weights: EM's in-memory backend
keeps one per run, so that what makes an iteration cheap (the gate's
log-probabilities on the rows from the last evaluation, which the E-step
reads, and the gate's own weighted sums there, which give the next
M-step's first gradient without a pass) lives in the engine's workspace,
never on the estimator.
"""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._kernels import (
    gate_hessian,
    gate_objective,
    log_softmax,
    routed_gate_objective,
    single_threaded_blas,
    weighted_cross_entropy,
)
from .._scaling import unit_scale_for_constant, weighted_standardisation
from .._sparse import is_sparse, sparse_gate_hessian, sparse_gate_objective
from ._solvers import (
    ARMIJO,
    MAX_HALVINGS,
    cholesky_solver,
    lbfgs_minimize,
    mean_hessian_factor,
    newton_direction,
    newton_minimize,
)

# The L-BFGS preconditioner (the Hessian at the starting point) is estimated
# on an evenly strided subsample of the rows: about 2 n / (free parameters)
# of them, so that it costs about two objective evaluations, within these
# bounds. Fewer rows give a rougher preconditioner and a few more iterations.
_PRECONDITIONER_ROWS = (2_000, 20_000)

# Newton's method (Hessian, line search) fits gates with at most this many
# free parameters, (n_features + 1) * (n_experts - 1): warm-started from the
# previous EM iteration it needs one or two steps, where L-BFGS needs five to
# ten gradient passes. Above it the Hessian's P^2 entries per row cost more
# than those passes, and L-BFGS (preconditioned) fits the gate.
NEWTON_MAX_PARAMETERS = 500

# Newton's Hessian is summed over max(2 n / P, _NEWTON_HESSIAN_MIN_ROWS) rows
# (all rows when there are fewer, else an evenly strided subsample): its
# 2 m P^2 flops are then about one gradient pass (4 n P), with enough rows
# for a sound estimate. The line search keeps every step a descent step, so a
# subsampled Hessian costs at most an extra step, never a worse fit. (Below
# a few hundred parameters BLAS runs the Hessian's small products slowly: on
# 1e4 rows, 5 features, 3 experts the whole-data Hessian was a third of the
# fit, and the 2000-row one gave the same iterations and log-likelihood.)
_NEWTON_HESSIAN_MIN_ROWS = 2_000

# Halvings of a routed block-Newton step before it is given up (see
# routed_newton_step).
_ROUTED_STEP_HALVINGS = 8


class SoftmaxGate(BaseEstimator):
    """Linear softmax (multinomial logit) gate over the experts.

    ``g(x) = softmax(x @ coef_ + intercept_)``. The first expert is the
    reference category (its column of ``coef_`` and ``intercept_`` is zero), as
    in ``nnet::multinom`` and flexmix's ``FLXPmultinom``, so the parameters are
    identifiable. The gate is fitted on soft targets (the responsibilities)
    by Newton's method with a line search on the weighted cross-entropy plus
    an L2 penalty (by L-BFGS, preconditioned by the Hessian at the starting
    point, for more than ``(n_features + 1) * (n_experts - 1) = 500`` free
    parameters, or where the Hessian is not positive definite).

    Parameters
    ----------
    alpha : float, default=1e-3
        L2 penalty on the coefficients of the standardised inputs (not on the
        intercepts), added to the summed weighted cross-entropy; the same
        scale as ``1 / C`` in :class:`~sklearn.linear_model.LogisticRegression`.
    max_iter : int, default=100
        Most Newton steps (or L-BFGS iterations) per fit.
    tol : float, default=1e-8
        Tolerance on the relative decrease of the mean loss: L-BFGS's
        ``ftol``, and for Newton's method the decrease its next step
        predicts (half the squared Newton decrement).
    warm_max_iter : int or None, default=1
        Most Newton steps of a warm-started fit, as EM makes at every
        iteration after the first (``max_iter`` still applies; None: no
        further bound). Each step decreases the objective, so EM's
        log-likelihood still never decreases (a generalised EM step); the
        gate is finished by the next iterations, from a warm start, rather
        than minimised exactly against responsibilities that are about to
        change. One step per EM iteration costs one pass over the data for
        the trial point (whose gate probabilities the next E-step reuses)
        and a subsampled Hessian; EM takes the gradient at the start from
        weighted sums it has already; on 1e6 rows, 20 features, 8 experts
        the fit took two more EM iterations than with two steps and 10% less
        time, to a log-likelihood within the tolerance.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_experts)
        Gate coefficients in the scale of the inputs; column 0 is zero.
    intercept_ : ndarray of shape (n_experts,)
        Gate intercepts; entry 0 is zero.
    n_iter_ : int
        Newton steps (or L-BFGS iterations) of the last fit.
    """

    def __init__(self, alpha=1e-3, max_iter=100, tol=1e-8, warm_max_iter=1):
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.warm_max_iter = warm_max_iter

    # The optimiser works on standardised inputs (far better conditioned);
    # ``_theta`` holds the free block (n_features + 1, n_experts - 1) there.

    def _init_scaler(self, X, sample_weight):
        self._mean, self._scale = weighted_standardisation(X, sample_weight)

    def _set_scaler(self, mean, std):
        """Standardise by (mean, std); a column without spread is left unscaled."""
        self._mean, self._scale = mean, unit_scale_for_constant(mean, std)

    def _set_public(self):
        W, b = self._theta[:-1], self._theta[-1]
        d, K1 = W.shape
        self.coef_ = np.zeros((d, K1 + 1))
        self.coef_[:, 1:] = W / self._scale[:, None]
        self.intercept_ = np.zeros(K1 + 1)
        self.intercept_[1:] = b - (self._mean / self._scale) @ W

    def fit(self, X, resp, sample_weight=None, warm_start=False):
        """Fit the gate on soft targets.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        resp : ndarray of shape (n_samples, n_experts)
            Target probabilities per row (rows sum to one).
        sample_weight : ndarray of shape (n_samples,), default=None
        warm_start : bool, default=False
            Start from the current parameters when they fit the shapes.

        Returns
        -------
        self : SoftmaxGate
        """
        SoftmaxGateFit(X, sample_weight, keep=False).fit(self, resp, warm_start)
        return self

    def penalty(self):
        """Return the L2 penalty ``alpha / 2 * ||W||^2`` at the current parameters.

        Returns
        -------
        penalty : float
            On the coefficients of the standardised inputs, not the intercepts.
        """
        check_is_fitted(self)
        W = self._theta[:-1]
        return 0.5 * float(self.alpha) * float(np.sum(W * W))

    def predict_log_proba(self, X):
        """Log gate probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_experts)
            Log of each expert's gate weight.
        """
        check_is_fitted(self)
        X = _as_rows(X)
        # one thread: threaded BLAS idles spinning while numba's threads work
        with single_threaded_blas():
            logits = X @ self.coef_
        logits += self.intercept_
        return log_softmax(logits)

    def predict_proba(self, X):
        """Gate probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_experts)
            Each expert's gate weight; rows sum to one.
        """
        return np.exp(self.predict_log_proba(X))


def softmax_preconditioner(gate, X, sw, alpha, total):
    """Lower Cholesky factor of the softmax objective's Hessian at ``gate``.

    L-BFGS runs on ``phi = L^T theta``, where the objective's Hessian is
    close to the identity: the same objective and minimum, reached in a few
    iterations instead of dozens (a sharp gate makes the Hessian in
    ``theta`` badly conditioned). The Hessian is estimated on an evenly
    strided subsample of the rows (see ``_PRECONDITIONER_ROWS``; a
    preconditioner need not be exact). None when it is not positive
    definite.
    """
    n, d = X.shape
    K1 = gate._theta.shape[1]
    low, high = _PRECONDITIONER_ROWS
    n_rows = max(low, min(high, 2 * n // ((d + 1) * K1)))
    rows = slice(None, None, max(1, n // n_rows))
    w = sw[rows]
    w_sum = w.sum()
    if not w_sum > 0:
        return None
    H = _hessian_kernel(X)(X[rows], gate._mean, gate._scale, gate._theta, w)
    return mean_hessian_factor(H, w_sum, alpha, total, d)


class SoftmaxGateFit:
    """The softmax gate's M-step on fixed inputs and row weights.

    One object serves every M-step of an EM run on ``(X, sample_weight)``.
    With ``keep`` it keeps, between calls, the gate's log-probabilities on
    the rows (and, when asked, its probabilities) from the last objective
    evaluation, and the gate's own weighted sums ``sum_i w_i g_i z_i`` there
    (``z_i`` the standardised row with a 1 appended), each with the
    parameters they belong to:

    - the E-step reads the log-probabilities (:attr:`log_proba`) instead of
      recomputing the gate;
    - the next warm fit starts from them (no logits product for its first
      evaluation) and, given the responsibilities' part of the gradient
      (``target_sums``, which the linear experts' Gram matrices hold), takes
      its first gradient from the difference of the two sums: no pass over
      ``X`` at all;
    - the arrays serve as Newton's buffers: fresh (n, K) arrays cost page
      faults, a fifth of an evaluation at 1e6 rows.

    Values are used only at the very parameters they were computed at.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,) or None
    keep : bool, default=True
        Whether to keep the values between calls (a one-off fit does not).
    counts : dict, default=None
        Where to add up the work done, for benchmarks: rows of objective
        evaluations (``gate_rows``), of evaluations from kept values
        (``gate_given_rows``), first gradients from sums
        (``gate_sum_starts``), Hessian rows (``gate_hessian_rows``), fits and
        Newton steps (``gate_fits``, ``gate_steps``).
    """

    def __init__(self, X, sample_weight, keep=True, counts=None):
        self.X = _as_rows(X)
        n = self.X.shape[0]
        self.sample_weight = (
            np.ones(n)
            if sample_weight is None
            else np.asarray(sample_weight, dtype=np.float64)
        )
        self.keep = keep
        self.counts = counts
        # L-BFGS iterations at most in a warm fit (None: the gate's
        # max_iter): a partial M-step that still lowers the gate's objective
        self.warm_lbfgs_max_iter = None
        self.log_proba = None  # the gate's log-probabilities at ``_values_at``
        self.proba = None  # its probabilities there, or None
        self._values_at = None
        self._gate_sums = None  # (theta, sum_i w_i g_i z_i) at an evaluation

    def values_for(self, gate):
        """The kept ``(log_proba, proba)`` when they are ``gate``'s, else None.

        A gate's fits rebind its parameter arrays, never write into them, so
        the very ``_theta`` array the values were kept for identifies them
        (copies of a gate share it).
        """
        if self.log_proba is None or self._values_at is not getattr(
            gate, "_theta", None
        ):
            return None
        return self.log_proba, self.proba

    def remember(self, gate, log_proba):
        """Keep ``log_proba``, computed elsewhere, as ``gate``'s on the rows."""
        if not self.keep:
            return
        self.log_proba, self.proba = log_proba, None
        self._values_at = gate._theta
        self._gate_sums = None

    def fit(self, gate, resp, warm_start, *, target_sums=None, keep_proba=False):
        """Fit ``gate`` (in place) on the soft targets ``resp``.

        Parameters
        ----------
        gate : SoftmaxGate
        resp : ndarray of shape (n_samples, n_experts)
        warm_start : bool
            Start from the gate's parameters when they fit the shapes.
        target_sums : tuple of (centre, totals, centred_sums), default=None
            The weighted targets' sums over the rows, ``totals[k] = sum_i
            w_i resp[i, k]`` and ``centred_sums[k] = sum_i w_i resp[i, k]
            (X[i] - centre)``, as EM has them from the experts' Gram
            matrices: a warm fit from kept values then takes its first
            gradient without a pass.
        keep_proba : bool, default=False
            Whether to keep the probabilities beside the log-probabilities
            (else the fit does not write them).

        Returns
        -------
        gate : SoftmaxGate
        """
        X, sw = self.X, self.sample_weight
        resp = np.asarray(resp, dtype=np.float64)
        n, d = X.shape
        K = resp.shape[1]
        warm = (
            warm_start
            and hasattr(gate, "_theta")
            and gate._theta.shape == (d + 1, K - 1)
        )
        start = self.values_for(gate) if warm and self.keep else None
        if not warm:
            gate._init_scaler(X, sw)
            gate._theta = np.zeros((d + 1, K - 1))
        total = sw.sum()
        alpha = float(gate.alpha)
        mean, scale = gate._mean, gate._scale
        # the gradient is sum_i w_i (g_i - resp_i) z_i: with the targets' part
        # known, the gate's part kept at the point this fit starts from gives
        # its first gradient without a pass
        targets = None if target_sums is None else standardised_sums(gate, target_sums)
        start_sums = None
        if start is not None and targets is not None and self._gate_sums is not None:
            at, sums = self._gate_sums
            if at is gate._theta:
                start_sums = sums
        log_buffer = proba_buffer = None
        if self.keep:
            if start is not None:
                log_buffer, proba_buffer = start
            elif _is_buffer(self.log_proba, (n, K)):
                log_buffer = self.log_proba
            else:
                log_buffer = np.empty((n, K))
            if not keep_proba:
                proba_buffer = None
            elif proba_buffer is None:
                reuse = _is_buffer(self.proba, (n, K)) and self.proba is not log_buffer
                proba_buffer = self.proba if reuse else np.empty((n, K))
        self._values_at = None
        self._gate_sums = None
        written = [None]  # theta whose values the buffers hold
        if start is not None:
            written[0] = gate._theta.ravel().copy()
        last = [None]  # (theta, the gate's sums) at the last evaluation
        objective_kernel = _objective_kernel(X)

        def objective(flat, first=False):
            # one fused pass (its NumPy twin without numba): the kernel
            # standardises each row on the fly, no copy of X
            theta = flat.reshape(d + 1, K - 1)
            if first and start is not None:
                if start_sums is not None:
                    self._count("gate_sum_starts", 1)
                    # the loss from the given log-probabilities (a read of
                    # two (n, K) arrays, no exponentials), the gradient from
                    # the sums
                    loss = weighted_cross_entropy(start[0], resp, sw)
                    grad = start_sums - targets
                else:
                    self._count("gate_given_rows", n)
                    loss, grad = objective_kernel(
                        X, mean, scale, theta, resp, sw, start[0], True, start[1]
                    )
            else:
                self._count("gate_rows", n)
                loss, grad = objective_kernel(
                    X, mean, scale, theta, resp, sw, log_buffer, False, proba_buffer
                )
                if log_buffer is not None:
                    written[0] = flat.copy()
            if targets is not None:
                last[0] = (flat.copy(), grad + targets)
            W = theta[:-1]
            grad[:-1] += alpha * W
            loss += 0.5 * alpha * np.sum(W * W)
            # mean scale keeps the solvers' tolerances independent of n
            return loss / total, grad.ravel() / total

        if K > 1:
            # the objective parallelises itself; the solvers' own small BLAS
            # calls only lose time to threads
            with single_threaded_blas():
                flat, gate.n_iter_ = self._minimise(gate, objective, warm, alpha, total)
            gate._theta = flat.reshape(d + 1, K - 1)
        else:
            gate.n_iter_ = 0
            written[0] = None
        gate._set_public()
        self._count("gate_fits", 1)
        self._count("gate_steps", gate.n_iter_)
        if self.keep:
            theta = gate._theta.ravel()
            if written[0] is not None and np.array_equal(written[0], theta):
                self.log_proba = log_buffer
                self.proba = proba_buffer
                if last[0] is not None and np.array_equal(last[0][0], theta):
                    self._gate_sums = (gate._theta, last[0][1])
            else:
                self.log_proba = gate.predict_log_proba(X)
                self.proba = None
            self._values_at = gate._theta
        return gate

    def fit_routed(self, gate, indptr, experts, targets, max_iter=None):
        """Fit ``gate`` (in place, warm) on targets at fixed sparse routes.

        Row ``i`` is routed to ``experts[indptr[i]:indptr[i + 1]]`` with
        targets ``targets[indptr[i]:indptr[i + 1]]`` (its responsibilities
        there), and the objective is the routed gate's cross-entropy, the
        softmax over each row's experts alone (see
        :func:`~skmoe._kernels.routed_gate_objective_numpy`), plus the
        penalty: the gate's term of the routed model's EM objective for these
        routes. Each evaluation computes the routed logits only. L-BFGS from
        the gate's parameters (no preconditioner: the dense gate's Hessian is
        not this objective's), at most ``max_iter`` iterations
        (None: the gate's ``max_iter``); it never ends above its start, so the
        routed model's objective at these routes does not fall.

        Returns
        -------
        gate : SoftmaxGate
        """
        X, sw = self.X, self.sample_weight
        d1, K1 = gate._theta.shape
        total = sw.sum()
        alpha = float(gate.alpha)
        mean, scale = gate._mean, gate._scale

        def objective(flat):
            self._count("gate_routed_rows", X.shape[0])
            theta = flat.reshape(d1, K1)
            loss, grad = routed_gate_objective(
                X, mean, scale, theta, indptr, experts, targets, sw
            )
            W = theta[:-1]
            grad[:-1] += alpha * W
            loss += 0.5 * alpha * np.sum(W * W)
            return loss / total, grad.ravel() / total

        max_iter = gate.max_iter if max_iter is None else min(gate.max_iter, max_iter)
        with single_threaded_blas():
            flat, gate.n_iter_ = lbfgs_minimize(
                objective, gate._theta.ravel().copy(), max_iter=max_iter, tol=gate.tol
            )
        gate._theta = flat.reshape(d1, K1)
        gate._set_public()
        self._count("gate_fits", 1)
        self._count("gate_steps", gate.n_iter_)
        # the dense log-probabilities are not computed: nothing kept holds
        self.log_proba = self.proba = self._values_at = self._gate_sums = None
        return gate

    def _count(self, name, value):
        if self.counts is not None:
            self.counts[name] = self.counts.get(name, 0) + value

    def _minimise(self, gate, objective, warm, alpha, total):
        """Newton (few parameters) or preconditioned L-BFGS; (flat theta, n_iter)."""
        X, sw = self.X, self.sample_weight
        d1, K1 = gate._theta.shape
        P = d1 * K1
        theta = gate._theta.ravel().copy()
        if P <= NEWTON_MAX_PARAMETERS:
            max_iter = gate.max_iter
            if warm and gate.warm_max_iter is not None:
                max_iter = min(max_iter, gate.warm_max_iter)
            hessian_solver = newton_hessian_solver(
                gate, X, sw, alpha, total, self.counts
            )
            theta, n_iter, ok = newton_minimize(
                objective, hessian_solver, theta, max_iter=max_iter, tol=gate.tol
            )
            if ok:
                return theta, n_iter
            # the Hessian is not positive definite: L-BFGS goes on from there
            gate._theta = theta.reshape(d1, K1)
        L = softmax_preconditioner(gate, X, sw, alpha, total) if warm else None
        max_iter = gate.max_iter
        if warm and self.warm_lbfgs_max_iter is not None:
            max_iter = min(max_iter, self.warm_lbfgs_max_iter)
        return lbfgs_minimize(
            objective,
            gate._theta.ravel(),
            max_iter=max_iter,
            tol=gate.tol,
            preconditioner=L,
        )


def newton_hessian_solver(gate, X, sw, alpha, total, counts=None):
    """``hessian_solver(theta)`` for Newton's method on the gate's objective.

    Solves with the mean objective's Hessian (total weight
    ``total``, L2 penalty ``alpha``), estimated on every row of ``X`` or an
    evenly strided subsample of max(2 n / P, 2000) of them (see
    ``_NEWTON_HESSIAN_MIN_ROWS``); None where it is not positive definite.
    ``X`` may itself be a subsample of the data (the Dask backend's).
    ``counts``: where to add the rows summed (``gate_hessian_rows``).
    """
    d1, K1 = gate._theta.shape
    P = d1 * K1
    n = X.shape[0]
    n_rows = min(n, max(2 * n // P, _NEWTON_HESSIAN_MIN_ROWS))
    stride = max(1, n // n_rows)
    w_rows_sum = sw[::stride].sum()
    penalised = np.zeros(P)
    penalised[: (d1 - 1) * K1] = alpha / total
    diagonal = np.arange(P) * (P + 1)  # flat indices of H's diagonal
    mean, scale = gate._mean, gate._scale
    hessian_kernel = _hessian_kernel(X)

    def hessian_solver(flat):
        if counts is not None:
            rows = -(-n // stride)
            counts["gate_hessian_rows"] = counts.get("gate_hessian_rows", 0) + rows
        H = hessian_kernel(X, mean, scale, flat.reshape(d1, K1), sw, stride)
        # the objective is the mean loss: scale the (sub)sample's sum
        H /= w_rows_sum
        H.flat[diagonal] += penalised
        if not np.isfinite(H.sum()):
            return None
        # a saturated gate leaves the intercepts' Hessian near singular
        H.flat[diagonal] += 1e-12 * max(np.trace(H) / P, 1e-300)
        return cholesky_solver(H)

    return hessian_solver


def warm_newton_step(gate, X, sw, gate_sums, target_sums, loss, counts=None):
    """Newton's step for the gate from weighted sums: no pass over ``X``.

    At the gate's current parameters, the gradient of the weighted
    cross-entropy is ``sum_i w_i (g_i - r_i) z_i``: the gate's own sums
    ``gate_sums`` minus the targets' (``target_sums``, as the experts' Gram
    matrices hold them, see :meth:`SoftmaxGateFit.fit`), and ``loss`` its
    value there (unpenalised, summed), as a fused EM pass computed them. The
    Hessian is :func:`newton_hessian_solver`'s. Returns ``(step, slope,
    mean_loss, done)`` in the objective of :meth:`SoftmaxGateFit.fit` (the
    mean penalised loss over the flat parameters): the caller evaluates the
    trial point and tests it against ``mean_loss + ARMIJO * t * slope``.
    """
    grad = gate_sums - standardised_sums(gate, target_sums)
    return gradient_newton_step(gate, X, sw, grad, loss, counts)


def gradient_newton_step(gate, X, sw, grad, loss, counts=None, total=None):
    """Newton's step for the gate from its gradient and loss, as a pass gave them.

    ``grad`` is ``sum_i w_i (g_i - r_i) z_i`` at the gate's current
    parameters, shape (n_features + 1, n_experts - 1), and ``loss`` the
    weighted cross-entropy there (both unpenalised, summed); returns what
    :func:`warm_newton_step` returns. ``total`` is the data's total weight
    where ``X`` and ``sw`` are a subsample of it (the Dask backend's; by
    default ``sw.sum()``).
    """
    if total is None:
        total = sw.sum()
    alpha = float(gate.alpha)
    theta = gate._theta
    W = theta[:-1]
    grad = grad.copy()
    grad[:-1] += alpha * W
    mean_loss = (loss + 0.5 * alpha * np.sum(W * W)) / total
    grad = grad.ravel() / total
    with single_threaded_blas():
        solve = newton_hessian_solver(gate, X, sw, alpha, total, counts)(theta.ravel())
    if solve is None:
        return None, 0.0, mean_loss, True
    step, slope, done = newton_direction(solve, grad, mean_loss, gate.tol)
    return step.reshape(theta.shape), slope, mean_loss, done


def routed_newton_step(gate, grad, curvature, loss, evaluate, counts):
    """One block-Newton step of ``gate`` (in place) on a routed objective.

    The objective is the routed gate's cross-entropy at fixed routes and
    targets plus the gate's penalty (see
    :meth:`SoftmaxGateFit.fit_routed`); ``evaluate(theta)`` gives its
    unpenalised value at a trial ``theta`` (on the rows in memory, where the
    routed pass at the trial point that is also the next E-step computes
    it, or summed over a Dask array's chunks). ``grad`` (d + 1, K),
    ``curvature`` (K, d + 1, d + 1) and ``loss`` are its unpenalised
    gradient in every expert's logit coefficients, each expert's curvature
    block and its value at the gate's parameters, as the routed EM pass
    summed them (:func:`~skmoe._kernels.routed_em_pass_numpy`). Each
    expert's coefficients step by its own block (the full Hessian couples
    every pair of experts that share rows: ``K^2`` blocks, where the pass
    makes ``K``). Expert 0 steps too, and the step is then re-expressed with
    its logit 0 again (subtracting its coefficients from every expert's
    leaves each row's routes and routed gate as they were): an expert 0
    held fixed while the others' steps raised their logits lost its rows
    (no rows of 10^5 after four steps, 32 experts). The step backtracks
    until the objective falls enough (Armijo); a step that never does is
    not taken, so the routed model's objective at these routes does not
    rise. (One step per M-step: 3 or 5 steps from the same curvature gave
    -1.83 and -1.77 per row after 100 iterations against one step's -1.71,
    10^5 x 20, 32 experts, top-2, and took longer.)

    ``counts`` gets the fit and its steps.

    Returns
    -------
    gate : SoftmaxGate
    """
    theta = gate._theta
    d1 = theta.shape[0]
    alpha = float(gate.alpha)
    penalised = np.ones((d1, 1))
    penalised[-1] = 0.0  # the intercepts are not penalised
    H = curvature + alpha * np.diag(penalised[:, 0])
    # a little ridge: an expert no row is routed to has no curvature in
    # its intercept (and no gradient, so its step stays 0)
    ridge = 1e-10 * (np.trace(H, axis1=1, axis2=2) / d1) + 1e-300
    H[:, np.arange(d1), np.arange(d1)] += ridge[:, None]
    counts["gate_fits"] = counts.get("gate_fits", 0) + 1
    gate.n_iter_ = 0
    full_theta = np.hstack([np.zeros((d1, 1)), theta])
    full_step = np.linalg.solve(
        H, (grad + alpha * penalised * full_theta).T[:, :, None]
    )[:, :, 0].T
    step = full_step[:, 1:] - full_step[:, :1]
    slope = -float(np.sum((grad[:, 1:] + alpha * penalised * theta) * step))
    if slope < 0.0:
        loss += 0.5 * alpha * np.sum(theta[:-1] ** 2)
        size = 1.0
        for _ in range(_ROUTED_STEP_HALVINGS):
            trial = theta - size * step
            value = evaluate(trial) + 0.5 * alpha * np.sum(trial[:-1] ** 2)
            if value <= loss + 1e-4 * size * slope:
                gate._theta = trial
                gate.n_iter_ = 1
                gate._set_public()
                break
            size *= 0.5
    counts["gate_steps"] = counts.get("gate_steps", 0) + gate.n_iter_
    return gate


def one_step_warm_gate(gate):
    """Whether ``gate``'s warm M-step is one Newton step a fused pass can test.

    The linear softmax gate with ``warm_max_iter=1`` and few enough
    parameters for Newton's method: its step comes from the sums of the
    pass that made the responsibilities, and the trial point is tested by
    the next pass (:func:`line_search_gate`).
    """
    if type(gate) is not SoftmaxGate or gate.warm_max_iter != 1:
        return False
    d1, K1 = gate._theta.shape
    return 0 < d1 * K1 <= NEWTON_MAX_PARAMETERS


def line_search_gate(gate, newton, previous, run_pass, total, counts):
    """Take the gate's Newton step by backtracking, each trial one pass.

    ``newton`` is :func:`warm_newton_step`'s ``(step, slope, loss, done)``;
    ``run_pass(theta, previous)`` makes a fused pass with the gate at
    ``theta`` (the E-step there, kept for the next M-step) and returns the
    gate's unpenalised summed loss against ``previous`` (the M-step's
    responsibilities, however the backend holds them, or None where no test
    is wanted). ``gate`` takes the trial accepted, which is the last pass
    made; with no step, a pass at the gate as it was. ``total`` is the
    data's total weight; ``counts`` gets the fit and its steps.
    """
    step, slope, loss, done = newton
    theta = gate._theta
    gate.n_iter_ = 0
    if not done:
        t = 1.0
        for _ in range(MAX_HALVINGS):
            trial = theta + t * step
            trial_loss = mean_penalised_loss(
                gate, trial, run_pass(trial, previous), total
            )
            if trial_loss <= loss + ARMIJO * t * slope:
                gate._theta, gate.n_iter_ = trial, 1
                break
            t *= 0.5
    if gate.n_iter_ == 0:
        # no step: the E-step at the new experts and the gate as it was
        run_pass(theta, None)
    finish_gate_step(gate, counts)


def finish_gate_step(gate, counts):
    """Publish a stepped gate's parameters; count its fit and its steps."""
    gate._set_public()
    counts["gate_fits"] = counts.get("gate_fits", 0) + 1
    counts["gate_steps"] = counts.get("gate_steps", 0) + gate.n_iter_


def mean_penalised_loss(gate, theta, loss, total):
    """The mean penalised objective of :meth:`SoftmaxGateFit.fit` at ``theta``."""
    W = theta[:-1]
    return (loss + 0.5 * float(gate.alpha) * np.sum(W * W)) / total


def standardised_sums(gate, target_sums):
    """The targets' weighted sums in the layout of the gate's gradient.

    ``sum_i w_i resp[i, k] z_i`` for experts 1..K-1, ``z_i`` the
    standardised row with a 1 appended, shape (n_features + 1, K - 1), from
    :meth:`SoftmaxGateFit.fit`'s ``target_sums``.
    """
    centre, totals, centred_sums = target_sums
    d = centre.shape[0]
    sums = np.empty((d + 1, totals.shape[0] - 1))
    # about the gate's mean instead of the centre: a rank-one shift
    shifted = centred_sums[1:] + totals[1:, None] * (centre - gate._mean)
    sums[:d] = (shifted / gate._scale).T
    sums[d] = totals[1:]
    return sums


def _is_buffer(a, shape):
    """Whether ``a`` is a C-contiguous float64 array of ``shape``."""
    return (
        a is not None
        and a.shape == shape
        and a.dtype == np.float64
        and a.flags.c_contiguous
    )


def _as_rows(X):
    """``X`` as the gate's kernels read it: float64, and sparse if it is."""
    return X if is_sparse(X) else np.asarray(X, dtype=np.float64)


def _objective_kernel(X):
    """``gate_objective`` for ``X``: the numba kernel, or its sparse twin."""
    return sparse_gate_objective if is_sparse(X) else gate_objective


def _hessian_kernel(X):
    """``gate_hessian`` for ``X``: the numba kernel, or its sparse twin."""
    return sparse_gate_hessian if is_sparse(X) else gate_hessian
