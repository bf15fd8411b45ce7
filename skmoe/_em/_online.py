"""Online generalised EM over mini-batches: ``partial_fit``.

Each call is one generalised EM step on the batch: responsibilities under the
current model (the in-memory backend's E-step), then a partial M-step that
moves every part of the model towards the batch's M-step by a step size

    rho_t = (learning_offset + t) ** -learning_decay

for the ``t``-th batch (``t = 0`` for the first, which sets rather than
updates), the stochastic-approximation schedule of online EM (Cappe &
Moulines, 2009) and of sklearn's online LatentDirichletAllocation:

- LinearRegression / Ridge experts (owned by skmoe): running
  responsibility-weighted Gram matrices of ``[x, 1, y]`` per unit weight,
  ``S <- (1 - rho) S + rho S_batch`` (the statistics of ``skmoe/_em/_stats.py``
  blended); the expert is the weighted least squares (plus ridge) solution of
  ``S`` times the weight seen, and its noise variance the residual spread that
  ``S`` holds, so the step is exact online EM for them;
- LogisticRegression experts (owned by skmoe) and the gate: one Newton step
  of length ``rho`` on the batch's weighted cross-entropy (soft targets for
  the gate, labels for the experts), preconditioned by the batch's Hessian;
- experts with ``partial_fit`` (SGDRegressor, SGDClassifier, GaussianNB...):
  their own ``partial_fit`` on the batch with the responsibilities times the
  sample weights as ``sample_weight``; a regression expert's noise variance
  is a running residual spread.

The first call starts where EM starts, from k-means responsibilities of the
batch. A first call after ``fit`` continues from the fitted gate and
``partial_fit`` experts; LinearRegression / Ridge and LogisticRegression
experts start their running statistics from that batch. A call that raises
leaves the estimator as it was.
"""

import copy

import numpy as np
from scipy import linalg
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import _check_partial_fit_first_call

from .._backends._numpy import InMemoryBackend, MixtureState
from .._gates._softmax import SoftmaxGate, softmax_preconditioner
from .._kernels import gate_objective
from .._plan import (
    ONLINE_LINEAR,
    ONLINE_LOGISTIC,
    ONLINE_PARTIAL_FIT,
    check_supported,
)
from .._validation import validate_fit_data
from ._start import seed_unset_random_states, smoothed_gate_targets
from ._stats import (
    fit_linear_closed_form,
    residual_variance_from_gram,
    weighted_grams,
)


def supports_partial_fit(moe):
    """``available_if`` check of the estimators' ``partial_fit``.

    Returns True, or raises the ValueError naming the first expert that
    partial_fit cannot update (or the gate it cannot step):
    ``hasattr(moe, "partial_fit")`` is then False, as for sklearn
    meta-estimators over estimators without it, and calling it raises an
    AttributeError caused by that ValueError.
    """
    names, templates = moe._expert_templates()
    check_supported("online", moe, names, templates)
    return True


class _OnlineState:
    """What partial_fit carries between batches."""

    def __init__(self, kinds, n_outputs, n_classes):
        K = len(kinds)
        self.kinds = kinds
        self.t = 0
        self.weight_seen = 0.0
        self.linear = [k for k in range(K) if kinds[k] == ONLINE_LINEAR]
        self.grams = None  # (n_linear, p, p) per unit weight
        self.x_shift = None
        # partial_fit regressors: running weighted squared residuals and
        # weights, per unit weight
        self.sq_resid = np.zeros((K, n_outputs))
        self.expert_weight = np.zeros(K)
        # LogisticRegression experts as reference-category softmax models
        self.softmax = {}
        self.softmax_weight = np.zeros(K)
        self.n_classes = n_classes
        self.experts = None


def _softmax_step(model, X, targets, sw, rho, weight_seen):
    """Move a fitted SoftmaxGate ``rho`` of a Newton step on the batch.

    The objective is the batch's weighted cross-entropy per unit of its
    weight plus the model's L2 penalty per unit of ``weight_seen``, the
    online estimate of the full objective per unit weight.
    """
    batch_weight = sw.sum()
    if not batch_weight > 0:
        return
    theta = model._theta
    _, grad = gate_objective(X, model._mean, model._scale, theta, targets, sw)
    alpha = float(model.alpha)
    grad = grad / batch_weight
    grad[:-1] += alpha / weight_seen * theta[:-1]
    chol = softmax_preconditioner(model, X, sw, alpha, weight_seen)
    if chol is None:
        step = grad.ravel()  # no curvature to use: a gradient step
    else:
        step = linalg.cho_solve((chol, True), grad.ravel(), check_finite=False)
    model._theta = theta - rho * step.reshape(theta.shape)
    model._set_public()


def _logistic_from_softmax(template, model, n_classes):
    """A fitted LogisticRegression giving the softmax model's probabilities."""
    est = clone(template)
    est.classes_ = np.arange(n_classes)
    if n_classes == 2:
        est.coef_ = model.coef_[:, 1][None].copy()
        est.intercept_ = model.intercept_[1:].copy()
    else:
        est.coef_ = model.coef_.T.copy()
        est.intercept_ = model.intercept_.copy()
    est.n_features_in_ = model.coef_.shape[0]
    est.n_iter_ = np.array([0], dtype=np.int32)
    return est


def _m_step(previous, state, backend, resp, rho):
    """The state ``rho`` of the way to the batch's M-step from ``previous``.

    ``previous`` (a MixtureState, or None before any fit) is not changed;
    ``state`` (the online statistics) is updated in place.
    """
    X, Y, sw = backend.X, backend.Y, backend.sample_weight
    likelihood, templates = backend.likelihood, backend.templates
    is_classifier = likelihood.is_classifier
    K = len(state.kinds)
    first = state.t == 0
    weights = resp * sw[:, None]
    batch_weight = sw.sum()
    experts = [None] * K if previous.experts is None else list(previous.experts)
    if not is_classifier:
        n_outputs = Y.shape[1]
        noise = (
            np.full((K, n_outputs), np.inf)
            if first or previous.scale is None
            else previous.scale.copy()
        )
    if state.linear:
        if state.x_shift is None:
            state.x_shift = sw @ X / batch_weight
        batch_grams = weighted_grams(X, state.x_shift, Y, weights[:, state.linear])
        batch_grams /= batch_weight
        if not np.all(np.isfinite(batch_grams)):
            raise _non_finite_batch()
        if state.grams is None:
            state.grams = batch_grams
        else:
            state.grams = (1 - rho) * state.grams + rho * batch_grams
        for j, k in enumerate(state.linear):
            template = templates[k]
            alpha = 0.0 if type(template) is LinearRegression else float(template.alpha)
            experts[k] = fit_linear_closed_form(
                template,
                alpha,
                state.grams[j] * state.weight_seen,
                state.x_shift,
                likelihood.y_is_1d,
            )
            noise[k] = residual_variance_from_gram(
                experts[k], state.grams[j], state.x_shift, np.zeros(n_outputs)
            )
    for k in range(K):
        w = weights[:, k]
        if state.kinds[k] == ONLINE_LOGISTIC:
            onehot = np.eye(state.n_classes)[Y]
            state.softmax_weight[k] += w.sum()
            model = state.softmax.get(k)
            if model is None:
                template = templates[k]
                alpha = (
                    0.0
                    if template.C == np.inf or template.penalty is None
                    else (1.0 / template.C)
                )
                model = SoftmaxGate(alpha=alpha)
                fit_w = w if w.sum() > 0 else sw
                model.fit(X, onehot, fit_w)
                state.softmax[k] = model
            else:
                _softmax_step(model, X, onehot, w, rho, state.softmax_weight[k])
            experts[k] = _logistic_from_softmax(templates[k], model, state.n_classes)
        elif state.kinds[k] == ONLINE_PARTIAL_FIT:
            keep = w > 0
            if not keep.any():
                continue
            est = experts[k]
            if est is None or not hasattr(est, "partial_fit"):
                est = clone(templates[k])
            else:
                # the fitted expert is the previous model's: step a copy
                est = copy.deepcopy(est)
            y_k = Y[keep, 0] if not is_classifier and likelihood.y_is_1d else Y[keep]
            extra = {"classes": np.arange(state.n_classes)} if is_classifier else {}
            est.partial_fit(
                X[keep], y_k, sample_weight=np.ascontiguousarray(w[keep]), **extra
            )
            experts[k] = est
            if not is_classifier:
                pred = np.asarray(est.predict(X)).reshape(len(X), n_outputs)
                sq = w @ (Y - pred) ** 2 / batch_weight
                n_eff = w.sum() / batch_weight
                if first or state.expert_weight[k] == 0:
                    state.sq_resid[k], state.expert_weight[k] = sq, n_eff
                else:
                    state.sq_resid[k] = (1 - rho) * state.sq_resid[k] + rho * sq
                    state.expert_weight[k] = (1 - rho) * state.expert_weight[
                        k
                    ] + rho * n_eff
                noise[k] = state.sq_resid[k] / state.expert_weight[k]
    scale = None
    if not is_classifier:
        floor = likelihood.noise_floor
        # an expert that has seen no weight yet gets the floor's scale back
        noise = np.where(np.isfinite(noise), noise, floor / 1e-6)
        scale = np.maximum(noise, floor)
    gate = copy.deepcopy(previous.gate)
    if first and not hasattr(gate, "_theta"):
        # as fit's first gate fit: targets it cannot separate exactly
        gate.fit(X, smoothed_gate_targets(resp), sw)
    else:
        _softmax_step(gate, X, resp, sw, rho, state.weight_seen)
    return MixtureState(experts, gate, scale)


def _non_finite_batch():
    return ValueError(
        "partial_fit: this batch makes the model's statistics non-finite "
        "(values too large to square in float64?); the model is left as it "
        "was. Scale X and y, e.g. with StandardScaler."
    )


def _check_finite(state, new):
    """Raise when the batch drove the statistics or parameters non-finite.

    Values near the top of the float range overflow the squares in the Gram
    matrices; the step is then refused, and the estimator keeps its state.
    """
    arrays = [new.gate._theta]
    if new.scale is not None:
        arrays.append(new.scale)
    if state.grams is not None:
        arrays.append(state.grams)
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise _non_finite_batch()


def online_partial_fit(estimator, X, y, sample_weight, classes):
    """One online generalised EM step of ``estimator`` on a batch; see the module."""
    names, templates = estimator._expert_templates()
    kinds = check_supported("online", estimator, names, templates)
    is_classifier = estimator._is_classifier_moe
    fitted = hasattr(estimator, "experts_")
    X, y, sw, attributes = validate_fit_data(
        estimator, X, y, sample_weight, reset=not fitted
    )
    if is_classifier:
        shell = copy.copy(estimator)
        _check_partial_fit_first_call(shell, classes)
        likelihood = (
            estimator._likelihood
            if fitted
            else estimator._likelihood_of_classes(shell.classes_)
        )
    else:
        likelihood = (
            estimator._likelihood if fitted else estimator._likelihood_for(y, sw)[0]
        )
    Y = likelihood.encode(y)
    state = getattr(estimator, "_online_state", None)
    K = len(templates)
    if state is None or state.experts is not getattr(estimator, "experts_", None):
        if fitted and len(estimator.experts_) != K:
            raise ValueError(
                f"partial_fit needs the same number of experts as the fitted "
                f"model ({len(estimator.experts_)}), got {K}."
            )
        if fitted:
            fitted_templates = estimator._templates
        else:
            n_samples = int(np.count_nonzero(sw))
            if n_samples < max(K, 2):
                raise ValueError(
                    f"The first batch has {n_samples} sample(s) of positive "
                    f"weight; it should have at least n_experts={K} (and 2) to "
                    "start the experts from."
                )
            random_state = check_random_state(estimator.random_state)
            fitted_templates = [
                seed_unset_random_states(clone(t), random_state) for t in templates
            ]
        # after fit, the gate and partial_fit experts continue from the fitted
        # model, while the running statistics (linear experts, logistic
        # experts' softmax models) start from this batch
        state = _OnlineState(
            kinds,
            1 if is_classifier else Y.shape[1],
            likelihood.classes.size if is_classifier else None,
        )
    else:
        fitted_templates = estimator._templates
        # stepped on a copy: a batch that fails leaves the estimator's alone
        # (the experts it refers to are the estimator's, not copied)
        state = copy.deepcopy(state, {id(state.experts): state.experts})
    n_features = attributes["n_features_in_"]
    make_gate = estimator._gate_factory(K, n_features, attributes["feature_names_in_"])
    backend = InMemoryBackend(X, Y, sw, likelihood, fitted_templates, make_gate).fresh()
    if state.t == 0 and not fitted:
        start, posterior = backend.start(
            estimator.init, 0, check_random_state(estimator.random_state), 0
        )
        posterior = backend.reseed(posterior)
        previous = start
        rho = 1.0
    else:
        previous = backend.warm_state(estimator)
        posterior = backend.e_step(previous)
        rho = (
            (estimator.learning_offset + state.t) ** -estimator.learning_decay
            if state.t
            else 1.0
        )
    state.weight_seen += sw.sum()
    # values near the top of the float range overflow on the way: what they
    # leave behind is checked, and refused, below
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.all(np.isfinite(posterior.resp)):
            raise _non_finite_batch()
        new = _m_step(previous, state, backend, posterior.resp, rho)
        _check_finite(state, new)
        posterior = backend.e_step(new)
        ll = backend.log_likelihood(posterior)
    if not np.isfinite(ll):
        raise _non_finite_batch()
    state.t += 1
    curve = getattr(estimator, "log_likelihood_curve_", np.empty(0)) if fitted else []
    objectives = getattr(estimator, "objective_curve_", np.empty(0)) if fitted else []
    result = backend.result(
        new,
        posterior,
        curves=(
            np.append(curve, ll),
            np.append(objectives, ll - backend.penalty(new)),
        ),
        n_iter=state.t,
        converged=False,
    )
    state.experts = result.experts
    result.attributes.update(attributes)
    result.attributes.update(
        n_experts_=K,
        expert_names_=names,
        _templates=fitted_templates,
        _online_state=state,
        **likelihood.fitted_attributes(result.scale),
    )
    return result.apply_to(estimator)
