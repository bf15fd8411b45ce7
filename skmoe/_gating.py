"""Softmax gating networks fitted on soft targets (the gate's M-step)."""

import weakref

import numpy as np
from scipy import linalg
from scipy.linalg import lapack
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._kernels import (
    gate_hessian,
    gate_objective,
    log_softmax,
    single_threaded_blas,
    weighted_cross_entropy,
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
_NEWTON_MAX_PARAMETERS = 500

# Newton's Hessian is summed over max(2 n / P, _NEWTON_HESSIAN_MIN_ROWS) rows
# (all rows when there are fewer, else an evenly strided subsample): its
# 2 m P^2 flops are then about one gradient pass (4 n P), with enough rows
# for a sound estimate. The line search keeps every step a descent step, so a
# subsampled Hessian costs at most an extra step, never a worse fit. (Below
# a few hundred parameters BLAS runs the Hessian's small products slowly: on
# 1e4 rows, 5 features, 3 experts the whole-data Hessian was a third of the
# fit, and the 2000-row one gave the same iterations and log-likelihood.)
_NEWTON_HESSIAN_MIN_ROWS = 2_000

# Armijo's sufficient-decrease constant and the most step halvings.
_ARMIJO = 1e-4
_MAX_HALVINGS = 40


def mean_hessian_factor(H, w_sum, alpha, total, n_features):
    """Lower Cholesky factor of the mean objective's Hessian, or None.

    ``H`` is the kernel ``gate_hessian`` summed over rows of total weight
    ``w_sum``; the objective is the mean loss over all rows (total weight
    ``total``) plus the L2 penalty ``alpha`` on the coefficients. None when the Hessian
    is not finite or not positive definite.
    """
    K1 = H.shape[0] // (n_features + 1)
    H = H / w_sum
    diag = np.arange(n_features * K1)
    H[diag, diag] += alpha / total
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)):
        return None
    ridge = 1e-10 * max(np.trace(H) / H.shape[0], np.finfo(float).tiny)
    H[np.diag_indices_from(H)] += ridge
    try:
        return linalg.cholesky(H, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None


def _is_buffer(a, shape):
    """Whether ``a`` is a C-contiguous float64 array of ``shape``."""
    return (
        a is not None
        and a.shape == shape
        and a.dtype == np.float64
        and a.flags.c_contiguous
    )


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
        the trial point (whose gate probabilities the next E-step reuses), a
        subsampled Hessian and, for the gradient at the start, one pass from
        the E-step's gate probabilities, or none where EM's linear experts
        give the targets' sums (``fit_log_proba``'s ``target_sums``); on 1e6
        rows, 20 features, 8 experts the fit took two more EM iterations than
        with two steps and 10% less time, to a log-likelihood within the
        tolerance.

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

    def __getstate__(self):
        state = super().__getstate__()
        # the sums kept for the next warm fit refer to that fit's arrays by
        # weak references, which do not pickle; a copy starts without them
        state.pop("_proba_sums", None)
        return state

    # The optimiser works on standardised inputs (far better conditioned);
    # ``_theta`` holds the free block (n_features + 1, n_experts - 1) there.

    def _init_scaler(self, X, sample_weight):
        w = sample_weight / sample_weight.sum()
        mean = w @ X
        self._set_scaler(mean, np.sqrt(w @ (X - mean) ** 2))

    def _set_scaler(self, mean, std):
        """Standardise by (mean, std); a column without spread is left unscaled."""
        std = std.copy()
        # constant columns (to round-off, relative to their magnitude) are
        # left unscaled; an absolute floor would also catch inputs whose
        # whole scale is tiny (1e-12) and leave the gate unable to move
        std[std <= 1e-12 * np.abs(mean)] = 1.0
        self._mean, self._scale = mean, std

    def _preconditioner(self, X, sw, alpha, total):
        """Lower Cholesky factor of the objective's Hessian at ``_theta``.

        L-BFGS then runs on ``phi = L^T theta``, where the objective's Hessian
        is close to the identity: the same objective and minimum, reached in a
        few iterations instead of dozens (a sharp gate makes the Hessian in
        ``theta`` badly conditioned). The Hessian (the kernel ``gate_hessian``)
        is estimated here on an evenly strided subsample of the rows (see
        ``_PRECONDITIONER_ROWS``; a preconditioner need not be exact).
        Returns None when it is not positive definite.
        """
        n, d = X.shape
        K1 = self._theta.shape[1]
        p = d + 1
        low, high = _PRECONDITIONER_ROWS
        n_rows = max(low, min(high, 2 * n // (p * K1)))
        rows = slice(None, None, max(1, n // n_rows))
        w = sw[rows]
        w_sum = w.sum()
        if not w_sum > 0:
            return None
        H = gate_hessian(X[rows], self._mean, self._scale, self._theta, w)
        return mean_hessian_factor(H, w_sum, alpha, total, d)

    def _newton(
        self, objective, X, sw, alpha, total, max_iter, keep, keep_proba, start
    ):
        """Minimise ``objective`` from ``_theta`` by Newton's method.

        Each step solves with the Hessian of the mean objective at the
        current point (:func:`gate_hessian`, on a strided subsample of the
        rows for large ``n``, plus the penalty) and backtracks until the
        Armijo condition holds, so the objective never increases. It stops
        when the Newton decrement predicts a decrease below ``tol`` (relative
        to the loss; after a step, judged with the previous Hessian before a
        new one is computed), after ``max_iter`` steps, or when no step
        decreases the objective. Returns (flat theta, n_iter, log_proba), or
        None when the Hessian is not positive definite (L-BFGS then goes on
        from ``_theta``, which holds the progress made).

        ``objective(flat, buffers, given)`` is evaluated with buffers for the
        gate's log-probabilities when ``keep`` (and for its probabilities
        when ``keep_proba`` too): the returned pair ``(log_proba, proba)``
        holds them at the returned theta (None when no evaluation left them
        there; ``proba`` None without ``keep_proba``). ``start``, when not
        None, is such a pair at ``_theta`` already (its ``proba`` may be
        None): the first evaluation reads them instead of computing the
        logits, and its arrays then serve as the buffers.
        """
        theta = self._theta.ravel().copy()
        d1, K1 = self._theta.shape
        n = X.shape[0]
        P = d1 * K1
        n_rows = min(
            n,
            max(2 * n // P, _NEWTON_HESSIAN_MIN_ROWS),
        )
        stride = max(1, n // n_rows)
        w_rows_sum = sw[::stride].sum()
        penalised = np.zeros(P)
        penalised[: (d1 - 1) * K1] = alpha / total

        diagonal = np.arange(P) * (P + 1)  # flat indices of H's diagonal

        def hessian_factor(theta):
            H = gate_hessian(
                X, self._mean, self._scale, theta.reshape(d1, K1), sw, stride
            )
            # the objective is the mean loss: scale the (sub)sample's sum
            H /= w_rows_sum
            H.flat[diagonal] += penalised
            if not np.isfinite(H.sum()):
                return None
            # a saturated gate leaves the intercepts' Hessian near singular
            H.flat[diagonal] += 1e-12 * max(np.trace(H) / P, 1e-300)
            # LAPACK's Cholesky itself: scipy's cho_factor / cho_solve
            # wrappers cost as much as the factorisation of a small H
            factor, info = lapack.dpotrf(H, lower=True, clean=False)
            return factor if info == 0 else None

        def newton_step(factor, grad, loss):
            step, _ = lapack.dpotrs(factor, grad, lower=True)
            step = -step
            slope = float(grad @ step)  # minus the squared Newton decrement
            done = not slope < 0 or -0.5 * slope <= self.tol * max(1.0, abs(loss))
            return step, slope, done

        # one pair of buffers for every evaluation; ``current`` is the pair
        # holding the (log-)probabilities at ``theta`` (None: none does). The
        # ``start`` arrays serve as the buffers once read: fresh (n, K)
        # arrays cost page faults, a fifth of an evaluation at 1e6 rows
        buffer = None
        if keep:
            log_buffer, proba_buffer = (None, None) if start is None else start
            if log_buffer is None:
                log_buffer = np.empty((n, K1 + 1))
            if not keep_proba:
                proba_buffer = None
            elif proba_buffer is None:
                proba_buffer = np.empty((n, K1 + 1))
            buffer = (log_buffer, proba_buffer)
        if start is not None:
            loss, grad = objective(theta, start, True)
            current = start
        else:
            loss, grad = objective(theta, buffer, False)
            current = buffer
        factor = None
        for n_iter in range(max_iter + 1):
            if factor is not None:
                # after a step: stop if even the previous Hessian sees nothing
                # left to gain, before paying for a new one
                if newton_step(factor, grad, loss)[2] or n_iter == max_iter:
                    return theta, n_iter, current
            factor = hessian_factor(theta)
            if factor is None:
                self._theta = theta.reshape(d1, K1)
                return None
            step, slope, done = newton_step(factor, grad, loss)
            if done or n_iter == max_iter:
                return theta, n_iter, current
            t = 1.0
            for _ in range(_MAX_HALVINGS):
                trial = theta + t * step
                trial_loss, trial_grad = objective(trial, buffer, False)
                if trial_loss <= loss + _ARMIJO * t * slope:
                    break
                t *= 0.5
            else:
                # no decrease: the minimum to round-off (the buffer now holds
                # a rejected trial's values, and may share the start's)
                overwritten = current is not None and current[0] is buffer[0]
                return theta, n_iter, None if overwritten else current
            theta, loss, grad, current = trial, trial_loss, trial_grad, buffer
        return theta, max_iter, current

    def _set_public(self):
        W, b = self._theta[:-1], self._theta[-1]
        d, K1 = W.shape
        self.coef_ = np.zeros((d, K1 + 1))
        self.coef_[:, 1:] = W / self._scale[:, None]
        self.intercept_ = np.zeros(K1 + 1)
        self.intercept_[1:] = b - (self._mean / self._scale) @ W

    def _lbfgs(self, objective, L):
        """Minimise ``objective`` from ``_theta``; return (flat theta, n_iter).

        With a preconditioner ``L`` (warm starts, where EM refits the gate at
        every iteration), L-BFGS-B runs on ``psi = L^T theta / c``: ``L``,
        from :meth:`_preconditioner`, makes the Hessian about the identity, and
        ``c``, the length of the starting gradient in ``L^T theta``, makes
        L-BFGS-B's first trial step (a step of length one) the Newton step,
        which is then taken at the first evaluation instead of after a line
        search. Same objective, same tolerances, same minimum. A cold start
        (from zero) runs L-BFGS-B on ``theta`` itself, as it always did.
        """
        options = {"maxiter": self.max_iter, "ftol": self.tol, "gtol": 1e-10}
        theta0 = self._theta.ravel()
        if L is None:
            result = minimize(
                objective, theta0, jac=True, method="L-BFGS-B", options=options
            )
            return result.x, int(result.nit)

        def to_theta(phi):
            return linalg.solve_triangular(
                L, phi, lower=True, trans="T", check_finite=False
            )

        def in_phi(phi):
            loss, grad = objective(to_theta(phi))
            grad = linalg.solve_triangular(L, grad, lower=True, check_finite=False)
            return loss, grad

        phi0 = L.T @ theta0
        loss0, grad0 = in_phi(phi0)
        c = float(np.linalg.norm(grad0))
        if not (np.isfinite(c) and c > 0):
            c = 1.0
        psi0 = phi0 / c

        def in_psi(psi):
            if np.array_equal(psi, psi0):  # L-BFGS-B starts here: known
                return loss0, grad0 * c
            loss, grad = in_phi(psi * c)
            return loss, grad * c

        result = minimize(in_psi, psi0, jac=True, method="L-BFGS-B", options=options)
        if result.nit == 0:
            # not moved: keep theta bit for bit, without the round trip
            return theta0, 0
        return to_theta(result.x * c), int(result.nit)

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
        self._fit(X, resp, sample_weight, warm_start, (False, False), None, None)
        return self

    def fit_log_proba(
        self,
        X,
        resp,
        sample_weight=None,
        warm_start=False,
        log_proba=None,
        proba=None,
        return_proba=False,
        target_sums=None,
    ):
        """Fit the gate, then return its log-probabilities on ``X``.

        The same fit as :meth:`fit`, returning what ``predict_log_proba(X)``
        would (to round-off): EM's M-step followed by its E-step. Newton's
        last evaluation of the objective has computed them already, so the
        E-step costs no pass over ``X`` for the gate.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        resp : ndarray of shape (n_samples, n_experts)
            Target probabilities per row (rows sum to one).
        sample_weight : ndarray of shape (n_samples,), default=None
        warm_start : bool, default=False
            Start from the current parameters when they fit the shapes.
        log_proba : ndarray of shape (n_samples, n_experts), default=None
            The log-probabilities on ``X`` at the current parameters, as the
            last call returned them; a warm fit starts from them instead of
            recomputing the logits. Ignored for a cold fit.
        proba : ndarray of shape (n_samples, n_experts), default=None
            The probabilities beside ``log_proba``, as the last call returned
            them with ``return_proba=True``: the first gradient then needs no
            exponentials. The fit overwrites the given arrays (they serve as
            its buffers, and may be what it returns).
        return_proba : bool, default=False
            Whether to return the probabilities too (else the fit does not
            compute them).
        target_sums : tuple of (centre, totals, centred_sums), default=None
            The weighted targets' sums over the rows, ``totals[k] = sum_i
            w_i resp[i, k]`` and ``centred_sums[k] = sum_i w_i resp[i, k]
            (X[i] - centre)`` (``w`` the sample weights), as EM has them from
            the experts' Gram matrices. With them the fit keeps the gate's
            own weighted sums at its last evaluation; a warm fit given the
            ``log_proba`` array that call returned, on the same ``X`` and
            ``sample_weight`` arrays (unchanged), then takes its first
            gradient from the difference of the two, with no pass over ``X``.
            Other arrays, even equal ones, get the pass.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_experts)
            Log of each expert's gate weight at the fitted parameters.
        proba : ndarray of shape (n_samples, n_experts) or None
            Only with ``return_proba``: the gate weights themselves (None
            where the fit left none behind).
        """
        start = None if log_proba is None else (log_proba, proba)
        keep = (True, return_proba)
        fitted = self._fit(X, resp, sample_weight, warm_start, keep, start, target_sums)
        if fitted is None:
            fitted = (self.predict_log_proba(X), None)
        return fitted if return_proba else fitted[0]

    def _standardised_sums(self, target_sums):
        """The targets' weighted sums in the layout of the gradient.

        ``sum_i w_i resp[i, k] z_i`` for experts 1..K-1, ``z_i`` the
        standardised row with a 1 appended, shape (n_features + 1, K - 1),
        from :meth:`fit_log_proba`'s ``target_sums``.
        """
        centre, totals, centred_sums = target_sums
        d = centre.shape[0]
        sums = np.empty((d + 1, totals.shape[0] - 1))
        # about the gate's mean instead of the centre: a rank-one shift
        shifted = centred_sums[1:] + totals[1:, None] * (centre - self._mean)
        sums[:d] = (shifted / self._scale).T
        sums[d] = totals[1:]
        return sums

    def _fit(self, X, resp, sample_weight, warm_start, keep, start, target_sums):
        """Fit; return ``(log_proba, proba)`` on X if Newton left them, else None.

        ``keep``: whether to keep the log-probabilities, and the
        probabilities. ``start``: None or the pair at the current parameters,
        as a previous call returned it. ``target_sums``: see
        :meth:`fit_log_proba`.
        """
        X = np.asarray(X, dtype=np.float64)
        resp = np.asarray(resp, dtype=np.float64)
        n, d = X.shape
        K = resp.shape[1]
        sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        warm = (
            warm_start
            and hasattr(self, "_theta")
            and self._theta.shape == (d + 1, K - 1)
        )
        if not warm:
            self._init_scaler(X, sw)
            self._theta = np.zeros((d + 1, K - 1))
        total = sw.sum()
        alpha = float(self.alpha)
        # the gradient is sum_i w_i (g_i - resp_i) z_i: with the targets' part
        # known, the gate's part at the point where the last call ended
        # (kept then) gives the first gradient of this one without a pass
        targets = None if target_sums is None else self._standardised_sums(target_sums)
        kept = getattr(self, "_proba_sums", None)
        start_sums = None
        if warm and targets is not None and kept is not None and start is not None:
            theta_at, sums, refs = kept
            # the very arrays of the call that kept them (a warm refit on
            # other rows of the same size must not read them), at its theta
            same = all(
                ref() is a for ref, a in zip(refs, (X, sw, start[0]), strict=True)
            )
            if same and np.array_equal(theta_at, self._theta):
                start_sums = sums
        last = [None]  # (theta, the gate's sums) at the last evaluation

        def objective(flat, buffers=None, given=False):
            # one fused pass (its NumPy twin without numba): the kernel
            # standardises each row on the fly, no copy of X
            theta = flat.reshape(d + 1, K - 1)
            log_proba, proba = (None, None) if buffers is None else buffers
            if given and start_sums is not None:
                # the loss from the given log-probabilities (a read of two
                # (n, K) arrays, no exponentials), the gradient from the sums
                loss = weighted_cross_entropy(log_proba, resp, sw)
                grad = start_sums - targets
            else:
                loss, grad = gate_objective(
                    X, self._mean, self._scale, theta, resp, sw, log_proba, given, proba
                )
            if targets is not None:
                last[0] = (flat.copy(), grad + targets)
            W = theta[:-1]
            grad[:-1] += alpha * W
            loss += 0.5 * alpha * np.sum(W * W)
            # mean scale keeps the solvers' tolerances independent of n
            return loss / total, grad.ravel() / total

        log_proba = None
        if K > 1:
            fitted = None
            # the objective parallelises itself; the solvers' own small BLAS
            # calls only lose time to threads
            with single_threaded_blas():
                if (d + 1) * (K - 1) <= _NEWTON_MAX_PARAMETERS:
                    max_iter = self.max_iter
                    if warm and self.warm_max_iter is not None:
                        max_iter = min(max_iter, self.warm_max_iter)
                    if start is not None:
                        start = tuple(
                            a if _is_buffer(a, (n, K)) else None for a in start
                        )
                    usable = warm and start is not None and start[0] is not None
                    fitted = self._newton(
                        objective,
                        X,
                        sw,
                        alpha,
                        total,
                        max_iter,
                        *keep,
                        start if usable else None,
                    )
                    if fitted is not None:
                        *fitted, log_proba = fitted
                if fitted is None:
                    L = self._preconditioner(X, sw, alpha, total) if warm else None
                    fitted = self._lbfgs(objective, L)
            flat, self.n_iter_ = fitted
            self._theta = flat.reshape(d + 1, K - 1)
        else:
            self.n_iter_ = 0
        self._proba_sums = None
        if log_proba is not None and last[0] is not None:
            at, sums = last[0]
            if np.array_equal(at, self._theta.ravel()):
                # weak references: the gate must not keep EM's arrays alive
                refs = tuple(weakref.ref(a) for a in (X, sw, log_proba[0]))
                self._proba_sums = (self._theta.copy(), sums, refs)
        self._set_public()
        return log_proba

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
        X = np.asarray(X, dtype=np.float64)
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
