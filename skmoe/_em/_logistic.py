"""LogisticRegression experts fitted by Newton's method: the classifier's M-step.

Expert ``k``'s M-step minimises the weighted multinomial cross-entropy of its
rows, ``-sum_i s_i log p(y_i | x_i)`` with ``s_i`` the responsibility times
the sample weight (times the class weight), plus scikit-learn's penalty
``||coef||^2 / (2 C)``: the gate's problem with one-hot targets. It is solved
here with the gate's kernels (``gate_objective``, ``gate_hessian``) and the
shared :func:`newton_minimize`: to convergence from a cold start, and one
Newton step with a line search from the previous iteration's expert (a
generalised EM step: the objective, and so the log-likelihood, never
increases). scikit-learn's L-BFGS refit from scratch took tens of
iterations, each a pass over the rows, at every M-step.

The parameters are those of the gate: class 0 has logit 0, the others
``Xs @ theta[:-1] + theta[-1]`` on standardised inputs ``Xs``. For two
classes that is scikit-learn's own binary model. Its multinomial model gives
every class coefficients with the penalty on all of them; at its minimum the
classes' coefficients sum to zero, so in the differences ``d_j`` (one per
feature, over classes 1..C-1, raw units) the penalty is ``sum_j d_j^T P d_j
/ (2 C)`` with ``P = I - 1 1^T / C``: the same model, the same minimum. The
result is a fitted :class:`~sklearn.linear_model.LogisticRegression` with
``coef_``, ``intercept_`` and ``classes_`` as scikit-learn's fit with the
same sample weights leaves them (intercepts of the multinomial model,
defined up to a constant, centred).
"""

import copy
from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight

from .._gates._solvers import (
    ARMIJO,
    MAX_HALVINGS,
    cholesky_solver,
    newton_direction,
    newton_minimize,
)
from .._kernels import (
    gate_hessian,
    gate_objective,
    logistic_experts_pass,
    logistic_gradient_sums,
    single_threaded_blas,
)

# Newton from a cold start: steps at most, and the tolerance on the decrease
# the Newton decrement predicts (relative to the mean loss).
_COLD_MAX_ITER = 100
_TOL = 1e-14

# The Hessian is summed over max(_HESSIAN_ROWS_PER_PARAMETER * P,
# _HESSIAN_MIN_ROWS) evenly strided rows for P parameters (a Newton step
# with an estimated Hessian and a line search still never increases the
# objective; on 1e5 rows, 4,000 rows instead of the gate's 2 n / P took the
# same EM iterations).
_HESSIAN_MIN_ROWS = 4_000
_HESSIAN_ROWS_PER_PARAMETER = 200


class LogisticSettings(NamedTuple):
    """What the Newton M-step needs of a LogisticRegression template."""

    penalty: float  # 1 / C, or 0 without a penalty
    fit_intercept: bool
    class_weight: object  # None, a dict or "balanced"


def logistic_settings(template):
    """The Newton M-step's settings for ``template``, or None where it does not apply.

    A LogisticRegression with an L2 penalty or none, any solver but
    liblinear (which penalises the intercept), any class weights: every
    solver then has the same minimum, which Newton's method reaches.
    """
    if type(template) is not LogisticRegression:
        return None
    if template.solver == "liblinear":
        return None
    penalty = template.penalty
    l2 = penalty in ("deprecated", "l2") and template.l1_ratio in (0, 0.0, None)
    if penalty == "deprecated" and template.l1_ratio not in (0, 0.0, None):
        return None
    if penalty is None or (l2 and not np.isfinite(template.C)):
        strength = 0.0
    elif l2:
        strength = 1.0 / float(template.C)
    else:
        return None
    return LogisticSettings(
        strength, bool(template.fit_intercept), template.class_weight
    )


def fit_logistic_experts(
    templates, settings, X, codes, weights, standardised, previous=None
):
    """Fit one LogisticRegression per column of ``weights`` by Newton's method.

    Parameters
    ----------
    templates : list of LogisticRegression
    settings : list of LogisticSettings
        :func:`logistic_settings` of each template.
    X : ndarray of shape (n_samples, n_features)
    codes : ndarray of shape (n_samples,)
        Label codes 0 .. n_classes - 1.
    weights : ndarray of shape (n_samples, n_experts)
        Responsibility times sample weight.
    standardised : tuple of (mean, scale)
        The inputs' standardisation (``weighted_standardisation``).
    previous : list of estimators, default=None
        The experts of the last M-step: one Newton step from each that is a
        LogisticRegression on the same classes, a cold fit for the others.

    Returns
    -------
    experts : list of LogisticRegression or None
        None where the expert's rows hold fewer than two classes (the
        caller's general path fits those).
    """
    experts = []
    for k, (template, setting) in enumerate(zip(templates, settings, strict=True)):
        problem = _ExpertProblem.of(setting, X, codes, weights[:, k], standardised)
        if problem is None:
            experts.append(None)
            continue
        start = None if previous is None else previous[k]
        theta0 = problem.theta_of(start)
        warm = theta0 is not None
        if not warm:
            theta0 = np.zeros((problem.d + 1, problem.K1))
        with single_threaded_blas():
            flat, n_iter, _ = newton_minimize(
                problem.objective,
                problem.hessian_solver,
                theta0.ravel(),
                max_iter=1 if warm else _COLD_MAX_ITER,
                tol=_TOL,
            )
        experts.append(problem.estimator(template, problem.split(flat), n_iter))
    return experts


class LogisticOutputs(NamedTuple):
    """What the batched Newton M-step leaves for the E-step and the next M-step.

    Both at the experts ``experts``: the log-probability of each row's label
    under each expert (the E-step's input), and ``probability - one-hot
    label`` in each expert's non-reference classes (times the next
    responsibilities, the next gradient's residuals).
    """

    experts: list
    log_label: np.ndarray  # (n, K)
    residual: np.ndarray  # (n, sum_k (C_k - 1))


def newton_step_logistic_experts(
    templates,
    settings,
    X,
    codes,
    weights,
    standardised,
    previous,
    cache,
    spare=None,
):
    """One Newton step for every expert at once from its last fit.

    The generalised M-step of the classifier's default experts: all experts'
    logits in one matrix product, their losses, label log-probabilities and
    residuals in one kernel pass (``logistic_experts_pass``), the gradient
    in one more product; each expert's step solves with its own subsampled
    Hessian and backtracks on its own Armijo condition, so no expert's
    objective increases. ``cache`` (a :class:`LogisticOutputs` at
    ``previous``, or None) saves the pass at the starting point; ``spare``
    (a :class:`LogisticOutputs` nothing reads any more, or None) lends its
    arrays to the new pass.

    Returns
    -------
    LogisticOutputs or None
        None where an expert cannot step from its last fit (no previous
        LogisticRegression on the classes its rows now hold): the caller
        fits them all by :func:`fit_logistic_experts` instead.
    """
    K = weights.shape[1]
    if previous is None or len(previous) != K:
        return None
    n_codes = int(codes.max()) + 1
    presents = _classes_present(codes, weights, n_codes)
    if any(present.size < 2 for present in presents):
        return None
    S = weights
    if any(setting.class_weight is not None for setting in settings):
        S = weights.copy()
    problems, thetas = [], []
    # one pass for every column's total (a strided column's sum is slow)
    totals = weights.sum(axis=0)
    for k in range(K):
        problem = _ExpertProblem(
            settings[k],
            X,
            codes,
            S[:, k],
            standardised,
            presents[k],
            n_codes,
            total=totals[k],
        )
        theta = problem.theta_of(previous[k])
        if theta is None:
            return None
        problems.append(problem)
        thetas.append(theta)
    layout = _Layout(problems)
    if cache is None or cache.experts is not previous:
        start = layout.evaluate(X, thetas, S)
        cache = LogisticOutputs(previous, start.log_label, start.residual)
    out = None if spare is None else (spare.log_label, spare.residual)
    losses, XtR, col_sums = logistic_gradient_sums(
        X, cache.residual, cache.log_label, S, layout.expert_of_column
    )
    steps = LogisticSteps(
        templates, problems, thetas, (losses, XtR, col_sums), layout.columns
    )
    evaluated = None
    for _ in range(MAX_HALVINGS):
        if steps.done:
            break
        evaluated = layout.evaluate(X, steps.points(), S, out)
        steps.test(evaluated.losses)
    else:
        steps.give_up()  # no step decreased these experts' objectives
    final = steps.points()
    experts = steps.experts()
    if evaluated is None:
        return cache._replace(experts=experts)  # no expert moved
    if not all(
        np.array_equal(a, b) for a, b in zip(evaluated.thetas, final, strict=True)
    ):
        evaluated = layout.evaluate(X, final, S, out)
    return LogisticOutputs(experts, evaluated.log_label, evaluated.residual)


def _classes_present(codes, weights, n_codes):
    """Each column's classes of positive weight (weights are never negative),
    from one product for all columns, not a pass per column."""
    indicator = np.zeros((codes.shape[0], n_codes))
    indicator[np.arange(codes.shape[0]), codes] = 1.0
    masses = indicator.T @ weights  # (n_codes, n_columns)
    return [np.flatnonzero(masses[:, k] > 0) for k in range(weights.shape[1])]


def _points(thetas, steps, t):
    """``theta_k + t_k step_k`` for each expert (``theta_k`` where ``t_k`` is 0)."""
    return [
        theta if t_k == 0 else theta + t_k * step
        for theta, step, t_k in zip(thetas, steps, t, strict=True)
    ]


class _Evaluated(NamedTuple):
    thetas: list
    losses: np.ndarray
    log_label: np.ndarray
    residual: np.ndarray


class _Layout:
    """The experts' non-reference classes side by side in one logit matrix."""

    def __init__(self, problems):
        self.problems = problems
        widths = [p.K1 for p in problems]
        self.offsets = np.r_[0, np.cumsum(widths)].astype(np.intp)
        self.columns = [
            slice(self.offsets[k], self.offsets[k + 1]) for k in range(len(problems))
        ]
        self.expert_of_column = np.repeat(np.arange(len(problems)), widths)
        self.local = np.stack([p.local for p in problems])

    def evaluate(self, X, thetas, S, out=None):
        """The pass at ``thetas``: losses (weights ``S``), label log-probabilities,
        residuals; written into the arrays ``out`` where given."""
        D = np.empty((X.shape[1], self.offsets[-1]))
        b = np.empty(self.offsets[-1])
        for k, (p, theta) in enumerate(zip(self.problems, thetas, strict=True)):
            D[:, self.columns[k]], b[self.columns[k]] = p.raw(theta)
        n, K = S.shape
        if out is None or out[1].shape != (n, D.shape[1]):
            out = (np.empty((n, K)), np.empty((n, D.shape[1])))
        log_label, residual = out
        codes = self.problems[0].codes
        losses = logistic_experts_pass(
            X, D, b, self.offsets, codes, self.local, S, log_label, residual
        )
        return _Evaluated(list(thetas), losses, log_label, residual)


class _ExpertProblem:
    """One expert's weighted, penalised cross-entropy in the gate's parameters.

    ``s`` is the expert's column of weights; with class weights it is
    multiplied by them in place (the caller passes a column it owns).
    """

    @classmethod
    def of(cls, setting, X, codes, w, standardised):
        """The problem of the rows with weights ``w``, or None below two classes."""
        n_codes = int(codes.max()) + 1
        (present,) = _classes_present(codes, w[:, None], n_codes)
        if present.size < 2:
            return None
        s = np.array(w, dtype=np.float64)  # a copy: class weights go in place
        return cls(setting, X, codes, s, standardised, present, n_codes)

    def __init__(
        self, setting, X, codes, s, standardised, present, n_codes, total=None
    ):
        self.setting = setting
        self.X = X
        self.codes = codes
        self.present = present
        mean, scale = standardised
        if not setting.fit_intercept:
            # no intercept to absorb a centring: scaled only
            mean = np.zeros_like(mean)
        self.mean, self.scale = mean, scale
        self.d = d = X.shape[1]
        self.C = C = present.size
        self.K1 = K1 = C - 1
        # each code's local class; -1 for a class the expert does not hold
        # (its rows all have weight 0: probability 0 under this expert)
        self.local = np.full(n_codes, -1, dtype=np.intp)
        self.local[present] = np.arange(C)
        self._y = None
        if setting.class_weight is not None:
            keep = s > 0
            class_weight = compute_class_weight(
                setting.class_weight,
                classes=present,
                y=codes[keep],
                sample_weight=s[keep],
            )
            s *= class_weight[self.y]
        self.s = s
        # ``total``: the weights' sum where the caller has it (before class
        # weights, which change it)
        reuse = total is not None and setting.class_weight is None
        self.total = float(total) if reuse else float(s.sum())
        self._targets = None
        # the penalty in theta: for feature j, strength / scale_j^2 * P, with
        # P the centring matrix of the multinomial model (1 for the binary one)
        self.P = np.eye(K1) - (1.0 / C if C > 2 else 0.0)
        self.per_feature = setting.penalty / scale**2
        n = X.shape[0]
        self.n_params = n_params = (d + 1) * K1
        n_rows = min(n, max(_HESSIAN_ROWS_PER_PARAMETER * n_params, _HESSIAN_MIN_ROWS))
        self.stride = max(1, n // n_rows)
        self._rows = None  # the Hessian's rows of X and s, taken when first used
        self.penalty_hessian = (
            np.kron(np.diag(np.r_[self.per_feature, 0.0]), self.P) / self.total
        )

    @property
    def y(self):
        """Each row's local class (-1: a class the expert does not hold)."""
        if self._y is None:
            self._y = self.local[self.codes]
        return self._y

    def split(self, flat):
        theta = flat.reshape(self.d + 1, self.K1)
        if not self.setting.fit_intercept:
            theta = theta.copy()
            theta[self.d] = 0.0
        return theta

    def penalty(self, theta):
        W = theta[: self.d]
        return 0.5 * float(np.sum(self.per_feature[:, None] * W * (W @ self.P)))

    def gradient(self, theta, XtR, col_sums):
        """The mean objective's gradient from ``X^T R`` and ``R``'s column sums."""
        d = self.d
        grad = np.empty((d + 1, self.K1))
        grad[:d] = (XtR - np.outer(self.mean, col_sums)) / self.scale[:, None]
        grad[d] = col_sums
        grad[:d] += self.per_feature[:, None] * (theta[:d] @ self.P)
        if not self.setting.fit_intercept:
            grad[d] = 0.0
        return grad / self.total

    def objective(self, flat, first=False):
        """The mean objective and its gradient, by the gate's kernel."""
        if self._targets is None:
            n = self.X.shape[0]
            self._targets = np.zeros((n, self.C))
            held = self.y >= 0
            self._targets[np.flatnonzero(held), self.y[held]] = 1.0
        theta = self.split(flat)
        loss, grad = gate_objective(
            self.X, self.mean, self.scale, theta, self._targets, self.s
        )
        W = theta[: self.d]
        loss += self.penalty(theta)
        grad[: self.d] += self.per_feature[:, None] * (W @ self.P)
        if not self.setting.fit_intercept:
            grad[self.d] = 0.0
        return loss / self.total, grad.ravel() / self.total

    def hessian_solver(self, flat):
        if self._rows is None:
            self._rows = (
                np.ascontiguousarray(self.X[:: self.stride]),
                np.ascontiguousarray(self.s[:: self.stride]),
            )
        X_rows, s_rows = self._rows
        w_rows_sum = s_rows.sum()
        if not w_rows_sum > 0:
            return None
        d, K1, n_params = self.d, self.K1, self.n_params
        H = gate_hessian(X_rows, self.mean, self.scale, self.split(flat), s_rows)
        H /= w_rows_sum
        H += self.penalty_hessian
        if not self.setting.fit_intercept:
            # the intercepts are fixed at 0: their rows and columns drop out
            rows = slice(d * K1, None)
            H[rows, :] = 0.0
            H[:, rows] = 0.0
            H[rows, rows] = np.eye(K1)
        if not np.isfinite(H.sum()):
            return None
        # without a penalty, separable rows leave the Hessian near singular
        H.flat[:: n_params + 1] += 1e-12 * max(np.trace(H) / n_params, 1e-300)
        return cholesky_solver(H)

    def raw(self, theta):
        """Raw coefficients ``D`` (d, K1) and intercepts ``b`` of classes 1.. vs 0."""
        D = theta[: self.d] / self.scale[:, None]
        return D, theta[self.d] - self.mean @ D

    def theta_of(self, start):
        """theta of the fitted expert ``start``, or None where it does not fit."""
        if (
            not isinstance(start, LogisticRegression)
            or not hasattr(start, "coef_")
            or not np.array_equal(start.classes_, self.present)
        ):
            return None
        coef = np.asarray(start.coef_, dtype=float)
        intercept = np.asarray(start.intercept_, dtype=float)
        if self.K1 == 1:
            D, b = coef.T, intercept  # (d, 1), (1,)
        else:
            D = (coef[1:] - coef[0]).T  # raw differences to class 0, (d, K1)
            b = intercept[1:] - intercept[0]
        theta = np.empty((self.d + 1, self.K1))
        theta[: self.d] = D * self.scale[:, None]
        # raw logit x D + b = xs (D scale) + b + mean D
        theta[self.d] = b + self.mean @ D
        return theta

    def estimator(self, template, theta, n_iter):
        """A fitted LogisticRegression from the reference-coded ``theta``."""
        d, C = self.d, self.C
        D, b = self.raw(theta)
        # a shallow copy of the unfitted template: clone's deep copy of its
        # parameters was a tenth of a small fit's time
        est = copy.copy(template)
        est.classes_ = self.present
        if C == 2:
            est.coef_ = D.T.copy()
            est.intercept_ = b.copy() if template.fit_intercept else np.zeros(1)
        else:
            full = np.hstack([np.zeros((d, 1)), D])  # (d, C), class 0 at zero
            # the symmetric model's minimum: classes' coefficients sum to
            # zero, intercepts (defined up to a constant) centred
            est.coef_ = (full - full.mean(axis=1, keepdims=True)).T
            bias = np.r_[0.0, b]
            est.intercept_ = (
                bias - bias.mean() if template.fit_intercept else np.zeros(C)
            )
        est.n_features_in_ = d
        est.n_iter_ = np.array([n_iter], dtype=np.int32)
        return est


def logistic_penalty(experts, settings):
    """The Newton-fitted experts' penalties, ``sum_k ||coef_k||^2 / (2 C)``.

    Part of the objective EM ascends (the log-likelihood minus the
    penalties its M-steps minimise). ``settings``: :func:`logistic_settings`
    of each expert's template (None: not fitted here, no penalty counted).
    """
    value = 0.0
    for est, setting in zip(experts, settings, strict=True):
        if setting is not None and isinstance(est, LogisticRegression):
            value += 0.5 * setting.penalty * float(np.sum(est.coef_**2))
    return value


# -- the streamed M-step: the experts' sums over every row come from passes
# over the chunks of the data; the Hessians from a subsample in memory


class ExpertArrays(NamedTuple):
    """Fitted experts as :func:`logistic_experts_pass` reads them.

    ``D`` (d, M) and ``b`` (M,): the raw non-reference logits of every
    expert side by side, expert ``k`` in columns ``offsets[k]:offsets[k +
    1]``; ``local`` (K, n_codes): each label code's class under each expert
    (-1: not held); ``expert_of_column`` (M,).
    """

    D: np.ndarray
    b: np.ndarray
    offsets: np.ndarray
    local: np.ndarray
    expert_of_column: np.ndarray


def expert_arrays(experts, n_features, n_codes):
    """:class:`ExpertArrays` of fitted experts on label codes.

    Each is a :class:`~sklearn.linear_model.LogisticRegression` or a
    DummyClassifier (an expert whose rows held one class: no columns, its
    class at probability 1; a prior over several, constant logits).
    """
    blocks, local = [], np.full((len(experts), n_codes), -1, dtype=np.intp)
    for k, est in enumerate(experts):
        classes = np.asarray(est.classes_, dtype=np.intp)
        local[k, classes] = np.arange(classes.size)
        if isinstance(est, LogisticRegression):
            coef = np.asarray(est.coef_, dtype=float)
            intercept = np.asarray(est.intercept_, dtype=float)
            if classes.size == 2:
                D, b = coef.T, intercept
            else:
                D, b = (coef[1:] - coef[0]).T, intercept[1:] - intercept[0]
        else:
            with np.errstate(divide="ignore"):
                log_prior = np.log(np.asarray(est.class_prior_, dtype=float))
            D = np.zeros((n_features, classes.size - 1))
            b = log_prior[1:] - log_prior[0]
        blocks.append((D, b))
    widths = [D.shape[1] for D, _ in blocks]
    return ExpertArrays(
        np.ascontiguousarray(np.hstack([D for D, _ in blocks])),
        np.concatenate([b for _, b in blocks]),
        np.r_[0, np.cumsum(widths)].astype(np.intp),
        local,
        np.repeat(np.arange(len(experts)), widths).astype(np.intp),
    )


class LogisticSteps:
    """Every expert's Newton step from its loss and gradient sums, each taken
    by backtracking on its own Armijo condition.

    ``problems`` (each expert's :class:`_ExpertProblem`, whose rows give its
    Hessian) at ``thetas``; ``sums``: the experts' losses, ``X^T R`` and
    ``R``'s column sums (:func:`logistic_gradient_sums`) over all rows, each
    expert in its ``columns``. :meth:`points` are the trial points;
    :meth:`test` takes their losses against the M-step's weights.
    """

    def __init__(self, templates, problems, thetas, sums, columns):
        losses, XtR, col_sums = sums
        self.templates, self.problems, self.thetas = templates, problems, thetas
        self.steps, self.slopes = [], np.zeros(len(problems))
        self.losses = np.empty(len(problems))
        for k, (problem, theta) in enumerate(zip(problems, thetas, strict=True)):
            grad = problem.gradient(theta, XtR[:, columns[k]], col_sums[columns[k]])
            loss = (losses[k] + problem.penalty(theta)) / problem.total
            solve = problem.hessian_solver(theta.ravel())
            step, slope, done = (None, 0.0, True)
            if solve is not None:
                step, slope, done = newton_direction(solve, grad.ravel(), loss, _TOL)
            self.steps.append(None if done else step.reshape(theta.shape))
            self.losses[k], self.slopes[k] = loss, slope
        moving = np.array([step is not None for step in self.steps])
        self.t = np.where(moving, 1.0, 0.0)
        self.accepted = ~moving

    @property
    def done(self):
        """Whether every expert's step is taken (or none was to be taken)."""
        return bool(self.accepted.all())

    def points(self):
        """``theta_k + t_k step_k``, the experts' current trial points."""
        return _points(self.thetas, self.steps, self.t)

    def experts(self):
        """The experts at the current trial points."""
        return [
            problem.estimator(template, theta, int(t > 0))
            for problem, template, theta, t in zip(
                self.problems, self.templates, self.points(), self.t, strict=True
            )
        ]

    def test(self, trial_losses):
        """Armijo's test of each untested step from its summed loss (against
        the M-step's weights) at the trial point; failed steps are halved."""
        points = self.points()
        for k in np.flatnonzero(~self.accepted):
            problem = self.problems[k]
            trial = (trial_losses[k] + problem.penalty(points[k])) / problem.total
            if trial <= self.losses[k] + ARMIJO * self.t[k] * self.slopes[k]:
                self.accepted[k] = True
            else:
                self.t[k] *= 0.5

    def take(self):
        """Take every step as it is, untested."""
        self.accepted[:] = True

    def give_up(self):
        """No step for the experts whose halvings ran out."""
        self.t[~self.accepted] = 0.0
        self.accepted[:] = True


def streamed_logistic_steps(
    templates, settings, previous, arrays, subsample, standardised, sums, totals
):
    """The streamed classifier's :class:`LogisticSteps`.

    As :func:`newton_step_logistic_experts` takes them in memory, from sums a
    pass over the chunks made (in the column layout of ``arrays``, the
    experts' :class:`ExpertArrays`), with each expert's Hessian on the
    in-memory ``subsample`` ``(X, codes, S)`` of rows and weights; ``totals``
    are the experts' summed weights over all rows. Use :func:`steppable`
    first: every expert must be a LogisticRegression on the classes its rows
    now hold.
    """
    Xs, codes_s, Ss = subsample
    n_codes = arrays.local.shape[1]
    problems = [
        _ExpertProblem(
            settings[k],
            Xs,
            codes_s,
            np.array(Ss[:, k]),
            standardised,
            np.asarray(est.classes_, dtype=np.intp),
            n_codes,
            total=totals[k],
        )
        for k, est in enumerate(previous)
    ]
    thetas = [p.theta_of(est) for p, est in zip(problems, previous, strict=True)]
    columns = [
        slice(arrays.offsets[k], arrays.offsets[k + 1]) for k in range(len(problems))
    ]
    with single_threaded_blas():
        return LogisticSteps(templates, problems, thetas, sums, columns)


def steppable(experts, masses):
    """Whether every expert can take a Newton step from its last fit: a
    LogisticRegression on exactly the classes of positive weight in its
    rows (``masses[c, k]``, the weight of class code ``c`` under expert
    ``k``)."""
    return all(
        isinstance(est, LogisticRegression)
        and np.array_equal(
            np.asarray(est.classes_, dtype=np.intp), np.flatnonzero(masses[:, k] > 0)
        )
        for k, est in enumerate(experts)
    )
