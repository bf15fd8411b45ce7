"""Online generalised EM over mini-batches: ``partial_fit``.

Each call is one generalised EM step on the batch: responsibilities under the
current model (E-step), then a partial M-step that moves every part of the
model towards the batch's M-step by a step size

    rho_t = (learning_offset + t) ** -learning_decay

for the ``t``-th batch (``t = 0`` for the first, which sets rather than
updates), the stochastic-approximation schedule of online EM (Cappe &
Moulines, 2009) and of sklearn's online LatentDirichletAllocation:

- LinearRegression / Ridge experts (owned by skmoe): running
  responsibility-weighted Gram matrices of ``[x, 1, y]`` per unit weight,
  ``S <- (1 - rho) S + rho S_batch``; the expert is the weighted least
  squares (plus ridge) solution of ``S`` times the weight seen, and its noise
  variance the residual spread that ``S`` holds, so the step is exact online
  EM for them;
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
experts start their running statistics from that batch.
"""

import inspect

import numpy as np
from scipy import linalg
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import _check_partial_fit_first_call
from sklearn.utils.validation import _check_sample_weight, validate_data

from ._experts import _fit_linear_closed_form, _weighted_grams
from ._gate_builder import check_linear_gate
from ._gating import SoftmaxGate
from ._kernels import gate_objective

_LINEAR, _LOGISTIC, _PARTIAL_FIT = "linear", "logistic", "partial_fit"


def _takes_sample_weight(method):
    return "sample_weight" in inspect.signature(method).parameters


def _expert_kind(est, *, is_classifier):
    """How partial_fit updates ``est``, or None when it cannot."""
    if not is_classifier and not getattr(est, "positive", False):
        if type(est) is LinearRegression or (
            type(est) is Ridge and np.isscalar(est.alpha)
        ):
            return _LINEAR
    if is_classifier and type(est) is LogisticRegression:
        l2 = est.penalty in ("deprecated", "l2", None) and est.l1_ratio in (0, None)
        if l2 and est.class_weight is None and est.fit_intercept:
            return _LOGISTIC
    partial_fit = getattr(est, "partial_fit", None)
    if partial_fit is not None and _takes_sample_weight(partial_fit):
        return _PARTIAL_FIT
    return None


def check_online_experts(names, templates, *, is_classifier):
    """The update kind of each expert, or a ValueError naming the first that
    partial_fit cannot update."""
    kinds = []
    for name, est in zip(names, templates, strict=True):
        kind = _expert_kind(est, is_classifier=is_classifier)
        if kind is None:
            owned = (
                "LogisticRegression (L2 or no penalty, with intercept, no class_weight)"
                if is_classifier
                else "LinearRegression or Ridge"
            )
            examples = (
                "SGDClassifier(loss='log_loss'), GaussianNB"
                if is_classifier
                else "SGDRegressor"
            )
            raise ValueError(
                f"partial_fit cannot update expert {name!r} "
                f"({type(est).__name__}): it needs experts whose own "
                f"partial_fit takes sample_weight (e.g. {examples}) or "
                f"experts skmoe updates itself, here {owned}."
            )
        kinds.append(kind)
    return kinds


def supports_partial_fit(moe):
    """``available_if`` check of the estimators' ``partial_fit``.

    Returns True, or raises the ValueError naming the first expert that
    partial_fit cannot update (or the gate it cannot step):
    ``hasattr(moe, "partial_fit")`` is then
    False, as for sklearn meta-estimators over estimators without it, and
    calling it raises an AttributeError caused by that ValueError.
    """
    check_linear_gate(moe, "partial_fit")
    names, templates = moe._expert_templates()
    check_online_experts(names, templates, is_classifier=moe._is_classifier_moe)
    return True


class _OnlineState:
    """What partial_fit carries between batches."""

    def __init__(self, kinds, n_outputs, n_classes):
        K = len(kinds)
        self.kinds = kinds
        self.t = 0
        self.weight_seen = 0.0
        self.linear = [k for k in range(K) if kinds[k] == _LINEAR]
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
    chol = model._preconditioner(X, sw, alpha, weight_seen)
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


def _linear_noise(expert, gram, x_shift, n_outputs):
    """Residual variance per output from a Gram matrix of ``[x - x_shift, 1, y]``."""
    d = x_shift.shape[0]
    coef = np.asarray(expert.coef_, dtype=float).reshape(n_outputs, d)
    intercept = np.broadcast_to(np.asarray(expert.intercept_, float), (n_outputs,))
    n_eff = gram[d, d]
    var = np.empty(n_outputs)
    for o in range(n_outputs):
        v = np.zeros(gram.shape[0])
        v[:d] = coef[o]
        v[d] = intercept[o] + coef[o] @ x_shift
        v[d + 1 + o] = -1.0
        var[o] = max(v @ gram @ v, 0.0) / n_eff if n_eff > 0 else np.inf
    return var


def _m_step(moe, state, X, Y, sw, resp, rho):
    """Move experts, noise and gate ``rho`` of the way to the batch's M-step."""
    is_classifier = moe._is_classifier_moe
    K = len(state.kinds)
    first = state.t == 0
    weights = resp * sw[:, None]
    batch_weight = sw.sum()
    experts = list(moe.experts_) if hasattr(moe, "experts_") else [None] * K
    if not is_classifier:
        n_outputs = Y.shape[1]
        noise = (
            np.full((K, n_outputs), np.inf)
            if first
            else moe._noise_variance_2d().copy()
        )
    if state.linear:
        if state.x_shift is None:
            state.x_shift = sw @ X / batch_weight
        batch_grams = _weighted_grams(X, state.x_shift, Y, weights[:, state.linear])
        batch_grams /= batch_weight
        if state.grams is None:
            state.grams = batch_grams
        else:
            state.grams = (1 - rho) * state.grams + rho * batch_grams
        for j, k in enumerate(state.linear):
            template = moe._templates[k]
            alpha = 0.0 if type(template) is LinearRegression else float(template.alpha)
            experts[k] = _fit_linear_closed_form(
                template,
                alpha,
                state.grams[j] * state.weight_seen,
                state.x_shift,
                moe._y_is_1d,
            )
            noise[k] = _linear_noise(
                experts[k], state.grams[j], state.x_shift, n_outputs
            )
    for k in range(K):
        w = weights[:, k]
        if state.kinds[k] == _LOGISTIC:
            onehot = np.eye(state.n_classes)[Y]
            state.softmax_weight[k] += w.sum()
            model = state.softmax.get(k)
            if model is None:
                template = moe._templates[k]
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
            experts[k] = _logistic_from_softmax(
                moe._templates[k], model, state.n_classes
            )
        elif state.kinds[k] == _PARTIAL_FIT:
            keep = w > 0
            if not keep.any():
                continue
            est = experts[k]
            if est is None or not hasattr(est, "partial_fit"):
                est = clone(moe._templates[k])
            y_k = Y[keep, 0] if not is_classifier and moe._y_is_1d else Y[keep]
            extra = {"classes": np.arange(moe.classes_.size)} if is_classifier else {}
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
    moe.experts_ = experts
    if not is_classifier:
        # an expert that has seen no weight yet gets the floor's scale back
        noise = np.where(np.isfinite(noise), noise, moe._noise_floor / 1e-6)
        noise = np.maximum(noise, moe._noise_floor)
        moe.noise_variance_ = noise[:, 0] if moe._y_is_1d else noise
    if first and not hasattr(moe.gate_, "_theta"):
        moe.gate_.fit(X, resp, sw)
    else:
        _softmax_step(moe.gate_, X, resp, sw, rho, state.weight_seen)


def partial_fit(moe, X, y, sample_weight, classes):
    """One online generalised EM step of ``moe`` on a batch; see the module."""
    # imported here: _base imports this module
    from ._base import _check_no_categorical, _seed_unset_random_states

    check_linear_gate(moe, "partial_fit")
    is_classifier = moe._is_classifier_moe
    fitted = hasattr(moe, "experts_")
    _check_no_categorical(X)
    X, y = validate_data(
        moe,
        X,
        y,
        reset=not fitted,
        dtype=np.float64,
        multi_output=not is_classifier,
        y_numeric=not is_classifier,
    )
    sw = _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True
    )
    if sw.sum() <= 0:
        raise ValueError("sample_weight sums to zero; nothing to fit.")
    if is_classifier:
        _check_partial_fit_first_call(moe, classes)
        Y = moe._validate_targets(y, fitting=False)
    else:
        Y = moe._validate_targets(y, fitting=not fitted, sample_weight=sw)
    state = getattr(moe, "_online_state", None)
    if state is None or state.experts is not getattr(moe, "experts_", None):
        names, templates = moe._expert_templates()
        kinds = check_online_experts(names, templates, is_classifier=is_classifier)
        random_state = check_random_state(moe.random_state)
        if fitted and len(moe.experts_) != len(templates):
            raise ValueError(
                f"partial_fit needs the same number of experts as the fitted "
                f"model ({len(moe.experts_)}), got {len(templates)}."
            )
        if not fitted:
            K = len(templates)
            n_samples = int(np.count_nonzero(sw))
            if n_samples < max(K, 2):
                raise ValueError(
                    f"The first batch has {n_samples} sample(s) of positive "
                    f"weight; it should have at least n_experts={K} (and 2) to "
                    "start the experts from."
                )
            moe.n_experts_ = K
            moe.expert_names_ = names
            moe._templates = [
                _seed_unset_random_states(clone(t), random_state) for t in templates
            ]
            moe.gate_ = moe._make_gate()
            moe.log_likelihood_curve_ = np.empty(0)
        state = _OnlineState(
            kinds,
            1 if is_classifier else Y.shape[1],
            moe.classes_.size if is_classifier else None,
        )
        # after fit, the gate and partial_fit experts continue from the fitted
        # model, while the running statistics (linear experts, logistic
        # experts' softmax models) start from this batch
        moe._online_state = state
    if state.t == 0 and not fitted:
        resp = moe._initial_resp(X, Y, sw, check_random_state(moe.random_state))
        resp = moe._reseed_dead_experts(resp, np.zeros(len(X)), sw)
        rho = 1.0
    else:
        resp = moe._e_step(X, Y, moe._expert_outputs(X))[0]
        rho = (moe.learning_offset + state.t) ** -moe.learning_decay if state.t else 1.0
    state.weight_seen += sw.sum()
    _m_step(moe, state, X, Y, sw, resp, rho)
    state.t += 1
    state.experts = moe.experts_
    resp, row_ll = moe._e_step(X, Y, moe._expert_outputs(X))
    ll = float(sw @ row_ll)
    moe.log_likelihood_ = ll
    moe.log_likelihood_curve_ = np.append(moe.log_likelihood_curve_, ll)
    moe.n_iter_ = state.t
    moe.converged_ = False
    w = sw / sw.sum()
    moe._training_summary = {
        "mean_gate": w @ moe.gate_.predict_proba(X),
        "effective_samples": sw @ resp,
        "log_likelihood": (sw * row_ll) @ resp,
    }
    return moe
