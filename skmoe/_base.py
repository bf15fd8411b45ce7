"""BaseMixtureOfExperts: validation, initialisation, the EM loop, n_init."""

import copy
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import _fit_context, clone
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._array_api import use_array_api
from ._experts import check_experts
from ._gate_builder import build_gate, gate_n_parameters
from ._gradient import fit_gradient
from ._hierarchical import tree_order
from ._kernels import responsibilities as _responsibilities
from ._selection import expert_n_parameters

# An expert whose summed responsibility falls below this fraction of the total
# sample weight has collapsed: it is re-seeded rather than fitted on nothing.
_DEAD_EXPERT_FRACTION = 1e-8

# Stochastic EM stops when its best penalised log-likelihood has not risen
# by more than ``tol`` (per unit weight) for this many iterations.
_SEM_WINDOW = 20


# k-means for the starting responsibilities runs on at most this many rows
# (an evenly strided subsample): Lloyd's iterations on all of 1e6 rows took
# 2-3 s, several EM iterations' worth, for a start EM then moves anyway.
_KMEANS_MAX_ROWS = 100_000

# The first (cold) gate fit, on the start's hard clusters, runs on at most
# this many rows (an evenly strided subsample, weights scaled to the whole),
# then takes one warm Newton step on every row: at 1e6 rows Newton from zero
# took 6 steps over all rows, about 2 s, for a gate EM then moves anyway.
_COLD_GATE_MAX_ROWS = 100_000


def _seed_unset_random_states(estimator, random_state):
    """Give every ``random_state=None`` inside ``estimator`` a drawn integer.

    Experts are refitted at each EM iteration; a fixed seed per expert keeps
    those refits, and the whole fit, reproducible for a given
    ``random_state``. Seeds the user set are left alone.
    """
    unset = {
        key: random_state.randint(np.iinfo(np.int32).max)
        for key, value in estimator.get_params(deep=True).items()
        if (key == "random_state" or key.endswith("__random_state")) and value is None
    }
    return estimator.set_params(**unset) if unset else estimator


def _kmeans_labels(Z, sample_weight, n_clusters, random_state):
    """k-means clusters of Z, started from weighted quantiles of its first
    principal component (PCA-Part) rather than random k-means++ seeds.

    The start is deterministic and depends on the rows only through their
    weights, so integer weights give the same clusters as repeated rows;
    Lloyd's iterations keep that. Where a heavy row leaves a quantile bin
    empty, k-means++ seeding is used instead. Above ``_KMEANS_MAX_ROWS`` rows
    the centres are found on an evenly strided subsample and every row then
    goes to its nearest centre.
    """
    n = Z.shape[0]
    if n > _KMEANS_MAX_ROWS:
        rows = slice(None, None, -(-n // _KMEANS_MAX_ROWS))
        if sample_weight[rows].sum() > 0:
            kmeans = _kmeans_fit(Z[rows], sample_weight[rows], n_clusters, random_state)
            return kmeans.predict(Z)
    return _kmeans_fit(Z, sample_weight, n_clusters, random_state).labels_


def _kmeans_fit(Z, sample_weight, n_clusters, random_state):
    """The fitted KMeans of :func:`_kmeans_labels` (all of Z's rows)."""
    W = sample_weight.sum()
    Zc = Z - sample_weight @ Z / W
    cov = (Zc * sample_weight[:, None]).T @ Zc / W
    direction = np.linalg.eigh(cov)[1][:, -1]
    # sign: the largest component positive, the first of those equal up to
    # round-off (for one input and one target, standardised, the direction is
    # (1, +-1) / sqrt(2): argmax alone would flip with the row order)
    size = np.abs(direction)
    lead = np.flatnonzero(size >= (1 - 1e-8) * size.max())[0]
    direction *= np.sign(direction[lead])
    proj = Zc @ direction
    order = np.argsort(proj, kind="stable")
    # equal projections (repeated rows) share a bin, as one weighted row would
    tie = np.cumsum(np.r_[True, np.diff(proj[order]) != 0]) - 1
    tie_weight = np.bincount(tie, weights=sample_weight[order])
    tie_mid = np.cumsum(tie_weight) - 0.5 * tie_weight
    bins = np.minimum((tie_mid / W * n_clusters).astype(int), n_clusters - 1)[tie]
    groups = np.empty(len(Z), dtype=int)
    groups[order] = bins
    mass = np.bincount(groups, weights=sample_weight, minlength=n_clusters)
    seed = random_state.randint(np.iinfo(np.int32).max)
    if np.all(mass > 0):
        centers = np.stack(
            [
                sample_weight[groups == k] @ Z[groups == k] / mass[k]
                for k in range(n_clusters)
            ]
        )
        kmeans = KMeans(
            n_clusters=n_clusters, init=centers, n_init=1, random_state=seed
        )
    else:
        kmeans = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
    return kmeans.fit(Z, sample_weight=sample_weight)


def _record_iteration(moe, n_iter, ll, monitored, curve, objective_curve, total, prev):
    """Append an EM iteration to the curves; return (objective, change).

    ``monitored`` is the penalised quantity the training ascends (summed);
    ``objective`` is it per unit weight, ``change`` its change since
    ``prev``. Prints the iteration when ``moe.verbose``. Shared by the
    in-memory, Array API and streamed EM loops.
    """
    curve.append(ll)
    objective_curve.append(monitored)
    objective = monitored / total
    change = objective - prev
    if moe.verbose:
        print(
            f"[skmoe] iteration {n_iter:4d}  log-likelihood {ll:.6f}  "
            f"change {change:.3e}"
        )
    return objective, change


def _fit_restart(moe, X, Y, sample_weight, seed, warm, restart):
    """One EM (or gradient) run on a shallow copy of ``moe``; returns
    (parameters, run).

    A run replaces the fitted attributes it sets rather than changing them in
    place, so restarts on copies can run side by side (in threads, processes
    or on a Dask cluster) and each depends only on its own ``seed``.
    """
    moe = copy.copy(moe)
    fit_run = fit_gradient if moe.training == "gradient" else type(moe)._fit_single
    run = fit_run(moe, X, Y, sample_weight, np.random.RandomState(seed), warm, restart)
    return moe._get_parameters(), run


def _check_no_categorical(X):
    """Refuse pandas categorical columns, which would be read as numbers.

    ``validate_data`` turns a categorical column into its category values:
    an obscure "could not convert string to float" for string categories,
    and a silent, meaningless number line for numeric ones.
    """
    if isinstance(X, pd.DataFrame):
        categorical = [
            str(name)
            for name, dtype in X.dtypes.items()
            if isinstance(dtype, pd.CategoricalDtype)
        ]
        if categorical:
            raise ValueError(
                f"X has categorical column(s) {categorical}; a mixture of "
                "experts needs numeric inputs. Encode them first, e.g. with "
                "OneHotEncoder in a Pipeline."
            )


class BaseMixtureOfExperts(_BaseComposition, metaclass=ABCMeta):
    """Base class for mixtures of experts fitted by EM.

    Subclasses give the expert likelihood: how experts are fitted and
    evaluated (``_fit_experts``, ``_expert_outputs``) and the expert
    log-density of the targets (``_log_prob_from_outputs``).
    """

    _parameter_constraints: dict = {
        "estimator": [None, HasMethods(["fit"])],
        "n_experts": [Interval(Integral, 1, None, closed="left")],
        "estimators": [None, list],
        "gate": [StrOptions({"linear", "mlp", "hierarchical"})],
        "gate_alpha": [Interval(Real, 0, None, closed="left")],
        "gate_hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "gate_features": [None, "array-like"],
        "gate_load_balance": [Interval(Real, 0, None, closed="left")],
        "gate_depth": [Interval(Integral, 1, None, closed="left")],
        "gate_branching": [Interval(Integral, 2, None, closed="left")],
        "training": [StrOptions({"em", "cem", "sem", "gradient"})],
        "gradient_solver": [StrOptions({"lbfgs", "adam"})],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "learning_decay": [Interval(Real, 0, 1, closed="both")],
        "learning_offset": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"kmeans", "random"})],
        "top_k": [None, Interval(Integral, 1, None, closed="left")],
        "n_jobs": [None, Integral],
        "device": [StrOptions({"cpu", "cuda"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    @abstractmethod
    def __init__(
        self,
        estimator=None,
        *,
        n_experts=3,
        estimators=None,
        gate="linear",
        gate_alpha=1e-3,
        gate_hidden_layer_sizes=(16,),
        gate_features=None,
        gate_load_balance=0.0,
        gate_depth=2,
        gate_branching=2,
        training="em",
        gradient_solver="lbfgs",
        batch_size="auto",
        learning_rate_init=1e-2,
        learning_decay=0.51,
        learning_offset=1.0,
        max_iter=200,
        tol=1e-6,
        n_init=1,
        init="kmeans",
        top_k=None,
        n_jobs=None,
        device="cpu",
        random_state=None,
        verbose=0,
        warm_start=False,
    ):
        self.estimator = estimator
        self.n_experts = n_experts
        self.estimators = estimators
        self.gate = gate
        self.gate_alpha = gate_alpha
        self.gate_hidden_layer_sizes = gate_hidden_layer_sizes
        self.gate_features = gate_features
        self.gate_load_balance = gate_load_balance
        self.gate_depth = gate_depth
        self.gate_branching = gate_branching
        self.training = training
        self.gradient_solver = gradient_solver
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.init = init
        self.top_k = top_k
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # -- nested parameters of ``estimators`` (the StackingRegressor convention)

    def get_params(self, deep=True):
        """Get parameters, including those of named ``estimators``.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of the experts, as
            ``<name>__<param>`` or ``estimator__<param>``.

        Returns
        -------
        params : dict
        """
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params):
        """Set parameters, including those of named ``estimators``.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : estimator instance
        """
        self._set_params("estimators", **params)
        return self

    # -- subclass hooks

    @abstractmethod
    def _default_expert(self):
        """The expert used when neither ``estimator`` nor ``estimators`` is set."""

    @abstractmethod
    def _validate_targets(self, y, *, fitting, sample_weight=None):
        """Check y; return the internal targets (float array or label codes)."""

    @abstractmethod
    def _kmeans_target_columns(self, Y):
        """Target columns appended to the inputs for k-means initialisation."""

    @abstractmethod
    def _m_step_experts(self, X, Y, weights):
        """Fit experts (and noise) on weights.

        Returns their training outputs and the weights' sums over the rows,
        ``(centre, totals, centred_sums)`` as :func:`fit_experts` gives them,
        or None where the experts' fit did not compute them.
        """

    @abstractmethod
    def _expert_outputs(self, X, experts=None, rows=None):
        """Per-expert outputs on X, from which the target density follows."""

    @abstractmethod
    def _log_prob_from_outputs(self, outputs, Y):
        """log p_k(y_i | x_i), shape (n_samples, n_experts)."""

    def _posterior_from_outputs(self, outputs, Y, log_gate):
        """Responsibilities and row log-likelihoods from the experts' outputs."""
        return _responsibilities(log_gate, self._log_prob_from_outputs(outputs, Y))

    # -- helpers

    def _expert_templates(self):
        """Names and unfitted templates of the experts, checked."""
        if self.estimators is not None:
            if self.estimator is not None:
                raise ValueError(
                    "Give either estimator (cloned n_experts times) or "
                    "estimators (a list of (name, estimator)), not both."
                )
            if len(self.estimators) == 0:
                raise ValueError("estimators is empty; give at least one expert.")
            try:
                names, templates = zip(*self.estimators, strict=True)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    "estimators must be a list of (name, estimator) tuples."
                ) from exc
            self._validate_names(names)
            names, templates = list(names), list(templates)
        else:
            template = (
                self._default_expert() if self.estimator is None else self.estimator
            )
            names = [f"expert{k}" for k in range(self.n_experts)]
            templates = [template] * self.n_experts
        check_experts(names, templates, need_proba=self._is_classifier_moe)
        return names, templates

    def _check_n_experts(self, K, warm):
        """Raise if ``K`` experts do not fit ``warm_start`` or ``top_k``."""
        if warm and len(self.experts_) != K:
            raise ValueError(
                f"warm_start=True needs the same number of experts as the "
                f"previous fit ({len(self.experts_)}), got {K}."
            )
        if self.top_k is not None and self.top_k > K:
            raise ValueError(f"top_k={self.top_k} is larger than n_experts={K}.")

    @staticmethod
    def _check_n_samples(n_samples, K):
        """Raise unless there are enough rows of positive weight for K experts."""
        if n_samples < max(K, 2):
            bound = f"n_experts={K}" if K >= 2 else "2"
            raise ValueError(
                f"n_samples={n_samples} should be >= {bound}: each expert needs "
                "a sample (of positive weight) to start from."
            )

    def _make_gate(self, random_state=None):
        random_state = check_random_state(random_state)
        return build_gate(
            self,
            self.n_experts_,
            self.n_features_in_,
            getattr(self, "feature_names_in_", None),
            seed=random_state.randint(np.iinfo(np.int32).max),
        )

    def _classify(self, resp, random_state):
        """The responsibilities the M-step uses under ``training``.

        Soft EM uses them as they are; classification EM replaces each row by
        its most probable expert (argmax), stochastic EM by an expert drawn
        from the row's responsibilities.
        """
        if self.training == "cem":
            labels = resp.argmax(axis=1)
        elif self.training == "sem":
            u = random_state.random_sample(resp.shape[0])
            labels = (np.cumsum(resp, axis=1) < u[:, None]).sum(axis=1)
            labels = np.minimum(labels, resp.shape[1] - 1)
        else:
            return resp
        hard = np.zeros_like(resp)
        hard[np.arange(resp.shape[0]), labels] = 1.0
        return hard

    def _initial_resp(self, X, Y, sample_weight, random_state, restart=0):
        """Starting responsibilities (n_samples, n_experts)."""
        n, K = X.shape[0], self.n_experts_
        if K == 1:
            return np.ones((n, 1))
        # k-means restarts land in much the same clusters; random
        # responsibilities explore other optima (on known-mixture data the
        # true optimum was found in 77 of 80 fits with n_init=5 this way, 72
        # with five k-means starts)
        if self.init == "random" or restart > 0:
            return random_state.dirichlet(np.ones(K), size=n)
        w = sample_weight / sample_weight.sum()
        mean = w @ X
        std = np.sqrt(w @ (X - mean) ** 2)
        std[std == 0] = 1.0
        Z = (X - mean) / std
        T = self._kmeans_target_columns(Y)
        if T.shape[1]:
            t_mean = w @ T
            t_std = np.sqrt(w @ (T - t_mean) ** 2)
            t_std[t_std == 0] = 1.0
            # targets carry as much weight as all inputs together: clusters
            # should separate regions where y behaves differently, not just x
            t_scale = np.sqrt(X.shape[1] / T.shape[1])
            Z = np.hstack([Z, t_scale * (T - t_mean) / t_std])
        labels = _kmeans_labels(Z, sample_weight, K, random_state)
        if self.gate == "hierarchical":
            labels = self._tree_ordered_labels(
                Z[:, : X.shape[1]], labels, sample_weight
            )
        resp = np.zeros((n, K))
        resp[np.arange(n), labels] = 1.0
        return resp

    def _tree_ordered_labels(self, Z, labels, sample_weight):
        """k-means labels renumbered so that sibling leaves get nearby clusters.

        ``Z`` holds the standardised inputs; only the gate's columns count.
        """
        columns = getattr(self.gate_, "features_", None)
        if columns is None and hasattr(self.gate_, "features"):
            columns = self.gate_.features
        Z = Z if columns is None else Z[:, columns]
        K = self.n_experts_
        mass = np.bincount(labels, weights=sample_weight, minlength=K)
        centres = np.stack(
            [
                sample_weight[labels == k] @ Z[labels == k] / max(mass[k], 1e-300)
                for k in range(K)
            ]
        )
        order = tree_order(centres, self.gate_branching)
        leaf = np.empty(K, dtype=np.intp)
        leaf[order] = np.arange(K)
        return leaf[labels]

    def _e_step(self, X, Y, outputs, log_gate=None):
        """Responsibilities and per-row log-likelihoods.

        ``log_gate``: the gate's log-probabilities on ``X`` where the M-step
        returned them (else they are computed here).
        """
        if log_gate is None:
            log_gate = self.gate_.predict_log_proba(X)
        return self._posterior_from_outputs(outputs, Y, log_gate)

    def _m_step(self, X, Y, sample_weight, resp, warm_gate, gate_probs=None):
        """Refit the experts and the gate; return (expert outputs, gate_probs).

        A gate with ``fit_log_proba`` (the linear softmax) returns its
        log-probabilities and probabilities on ``X`` from its last objective
        evaluation, ``gate_probs``, and starts from the pair it returned at
        the previous M-step (the gate's at its current parameters): two
        passes over ``X`` fewer per EM iteration, and no exponentials for
        the first gradient. Where the experts' fit gives the weights' sums
        (linear experts: their Gram matrices hold them), the first gradient
        needs no pass over ``X`` at all (see ``SoftmaxGate.fit_log_proba``).
        Else ``gate_probs`` is None and the E-step computes the log gate.
        """
        # unit weights (the usual case): the responsibilities themselves
        unit = sample_weight[0] == 1 and np.all(sample_weight == 1)
        weights = resp if unit else resp * sample_weight[:, None]
        outputs, weight_sums = self._m_step_experts(X, Y, weights)
        fit_log_proba = getattr(self.gate_, "fit_log_proba", None)
        if fit_log_proba is None:
            self.gate_.fit(X, resp, sample_weight, warm_start=warm_gate)
            return outputs, None
        log_proba, proba = (None, None) if gate_probs is None else gate_probs
        n = X.shape[0]
        if not warm_gate and n > _COLD_GATE_MAX_ROWS:
            rows = slice(None, None, -(-n // _COLD_GATE_MAX_ROWS))
            sw_rows = sample_weight[rows]
            if sw_rows.sum() > 0:
                scale = sample_weight.sum() / sw_rows.sum()
                # contiguous once, not at each of the fit's passes
                self.gate_.fit(
                    np.ascontiguousarray(X[rows]),
                    np.ascontiguousarray(resp[rows]),
                    sw_rows * scale,
                )
                warm_gate = True
        # with the sums the next first gradient reads no probabilities: the
        # fit then does not write them (a pass of stores over an (n, K) array)
        want_proba = weight_sums is None
        fitted = fit_log_proba(
            X,
            resp,
            sample_weight,
            warm_start=warm_gate,
            log_proba=log_proba,
            proba=proba,
            return_proba=want_proba,
            target_sums=weight_sums,
        )
        gate_probs = fitted if want_proba else (fitted, None)
        return outputs, gate_probs

    def _reseed_dead_experts(self, resp, row_ll, sample_weight):
        """Give collapsed experts the rows the mixture explains worst.

        An expert whose share of the total weight falls below
        ``_DEAD_EXPERT_FRACTION`` can no longer be fitted meaningfully; it
        restarts on the worst-explained rows (of positive weight, as many as
        make up ``1 / (2 n_experts)`` of the total weight) instead of
        producing NaN. It shares those rows half and half with the experts
        that held them, so a re-seed never empties another expert. The
        log-likelihood may dip once after this.
        """
        K = resp.shape[1]
        total = sample_weight.sum()
        n_eff = sample_weight @ resp
        # relative to the total weight, so that weights and repeated rows agree
        dead = np.flatnonzero(n_eff < _DEAD_EXPERT_FRACTION * total)
        if dead.size == 0 or dead.size == K:
            return resp
        order = np.argsort(row_ll, kind="stable")
        order = order[sample_weight[order] > 0]
        # block j holds the rows whose cumulative weight is in (j, j + 1] shares
        share = total / (2 * K)
        stops = np.searchsorted(
            np.cumsum(sample_weight[order]),
            share * np.arange(1, dead.size + 1),
            side="right",
        )
        start = 0
        for k, stop in zip(dead, stops, strict=True):
            rows = order[start : max(stop, start + 1)]
            resp[rows] *= 0.5
            resp[rows, k] += 0.5
            start = max(stop, start + 1)
        warnings.warn(
            f"Expert(s) {dead.tolist()} collapsed (share of the total weight "
            f"below {_DEAD_EXPERT_FRACTION:g}) and were re-seeded on the "
            "worst-explained rows.",
            UserWarning,
            stacklevel=2,
        )
        return resp

    def _get_parameters(self):
        return (self.experts_, self.gate_, getattr(self, "noise_variance_", None))

    def _set_parameters(self, params):
        self.experts_, self.gate_, noise = params
        if noise is not None:
            self.noise_variance_ = noise

    def _fit_single(self, X, Y, sample_weight, random_state, warm, restart=0):
        """One EM run (soft, classification or stochastic, per ``training``).

        Returns the log-likelihood curve, the monitored objective's curve,
        n_iter, converged, and the responsibilities and per-row
        log-likelihoods at the kept parameters.

        Soft EM monitors the penalised log-likelihood and stops when it
        changes by less than ``tol`` per unit weight. Classification EM
        monitors the penalised classification log-likelihood
        ``sum_i w_i max_k log(g_k p_k)``, which its C- and M-steps never
        decrease, and stops likewise. Stochastic EM's draws keep the
        log-likelihood moving, so it stops when the best penalised
        log-likelihood has not risen by ``tol`` for ``_SEM_WINDOW``
        iterations, and keeps the parameters of that best iteration.
        """
        total = sample_weight.sum()
        # the gate's (log-probabilities, probabilities or None) on X at its
        # current parameters, where the M-step left them
        gate_probs = None
        if warm:
            outputs = self._expert_outputs(X)
            gate_probs = (self.gate_.predict_log_proba(X), None)
            resp, row_ll = self._e_step(X, Y, outputs, gate_probs[0])
        else:
            self.gate_ = self._make_gate(random_state)
            resp = self._initial_resp(X, Y, sample_weight, random_state, restart)
            # nothing is explained yet: an expert that the start left empty
            # (fewer distinct rows than experts) is re-seeded on the first rows
            row_ll = np.zeros(X.shape[0])
        stochastic = self.training == "sem"
        curve, objective_curve = [], []
        prev = best = -np.inf
        last_gain = 0
        kept = None
        converged = False
        for n_iter in range(1, self.max_iter + 1):
            resp = self._classify(resp, random_state)
            resp = self._reseed_dead_experts(resp, row_ll, sample_weight)
            outputs, gate_probs = self._m_step(
                X, Y, sample_weight, resp, warm or n_iter > 1, gate_probs
            )
            log_gate = None if gate_probs is None else gate_probs[0]
            resp, row_ll = self._e_step(X, Y, outputs, log_gate)
            ll = float(sample_weight @ row_ll)
            if self.training == "cem":
                # log max_k g_k p_k = log p(y | x) + log max_k h_k
                value = float(sample_weight @ (row_ll + np.log(resp.max(axis=1))))
            else:
                value = ll
            # monitored per unit weight, penalty included: EM ascends this
            objective, change = _record_iteration(
                self,
                n_iter,
                ll,
                value - self.gate_.penalty(),
                curve,
                objective_curve,
                total,
                prev,
            )
            if stochastic:
                if objective > best:
                    experts, gate, noise = self._get_parameters()
                    # the M-step refits the gate in place; experts are new
                    kept = ((experts, copy.deepcopy(gate), noise), resp, row_ll)
                    if objective > best + self.tol:
                        last_gain = n_iter
                    best = objective
                if n_iter - last_gain >= _SEM_WINDOW:
                    converged = True
                    break
            elif abs(change) < self.tol:
                converged = True
                break
            prev = objective
        if stochastic:
            params, resp, row_ll = kept
            self._set_parameters(params)
        return (
            np.asarray(curve),
            np.asarray(objective_curve),
            n_iter,
            converged,
            resp,
            row_ll,
        )

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the mixture of experts by EM.

        Given Dask arrays, a regressor with linear experts is fitted out of
        core, by EM streamed over the chunks (see the user guide, "Scaling
        out with Dask").

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (or a Dask array).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (or a Dask array).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights; zero weight equals leaving the row out.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        # _dask imports this module, and dask only when given Dask arrays
        from ._dask import fit_streamed, is_dask_collection

        if is_dask_collection(X) or is_dask_collection(y):
            # out of core: EM streamed over the chunks (linear experts only)
            return fit_streamed(self, X, y, sample_weight)
        if use_array_api(self.device, X):
            # the GPU / Array API path (skmoe/_em_array_api.py)
            from ._em_array_api import fit_array_api

            return fit_array_api(self, X, y, sample_weight)
        warm = self.warm_start and hasattr(self, "experts_")
        _check_no_categorical(X)
        X, y = validate_data(
            self,
            X,
            y,
            reset=not warm,
            dtype=np.float64,
            multi_output=not self._is_classifier_moe,
            y_numeric=not self._is_classifier_moe,
        )
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if sample_weight.sum() <= 0:
            raise ValueError("sample_weight sums to zero; nothing to fit.")
        Y = self._validate_targets(y, fitting=True, sample_weight=sample_weight)
        names, templates = self._expert_templates()
        K = len(templates)
        self._check_n_experts(K, warm)
        # rows of zero weight are left out, so they do not count
        self._check_n_samples(int(np.count_nonzero(sample_weight)), K)
        self.n_experts_ = K
        self.expert_names_ = names
        random_state = check_random_state(self.random_state)
        self._templates = [
            _seed_unset_random_states(clone(t), random_state) for t in templates
        ]

        n_init = 1 if warm else self.n_init
        # seeds drawn up front: each restart is the same wherever it runs
        seeds = random_state.randint(np.iinfo(np.int32).max, size=n_init)
        if n_init == 1:
            # in this process, so that the experts' own fits can spread out
            runs = [_fit_restart(self, X, Y, sample_weight, seeds[0], warm, 0)]
        else:
            runs = Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_restart)(self, X, Y, sample_weight, seed, warm, init)
                for init, seed in enumerate(seeds)
            )
        # log-likelihood at the kept parameters (stochastic EM keeps its best
        # iteration); the first of the best, as in a serial loop
        lls = [float(sample_weight @ run[-1]) for _, run in runs]
        best = max(range(n_init), key=lambda i: (lls[i], -i))
        best_ll = lls[best]
        params, (curve, objective_curve, n_iter, converged, resp, row_ll) = runs[best]
        self._set_parameters(params)
        self.log_likelihood_curve_ = curve
        self.objective_curve_ = objective_curve
        self.log_likelihood_ = best_ll
        self.n_iter_ = n_iter
        self.converged_ = converged
        w = sample_weight / sample_weight.sum()
        self._training_summary = {
            "mean_gate": w @ self.gate_.predict_proba(X),
            "effective_samples": sample_weight @ resp,
            "log_likelihood": (sample_weight * row_ll) @ resp,
        }
        if not converged:
            warnings.warn(
                f"{'EM' if self.training == 'em' else 'Gradient training'} did "
                f"not converge in max_iter={self.max_iter} iterations "
                f"(tol={self.tol}); increase max_iter or tol, or try another "
                "initialisation.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    # -- prediction helpers

    def _check_X(self, X):
        check_is_fitted(self)
        _check_no_categorical(X)
        return validate_data(self, X, reset=False, dtype=np.float64)

    def predict_gate(self, X):
        """Gate probabilities of each expert for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        gate : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        return self.gate_.predict_proba(self._check_X(X))

    def _routed_gate(self, X):
        """Gate weights with only the ``top_k`` largest per row kept."""
        gate = self.gate_.predict_proba(X)
        if self.top_k is None or self.top_k >= self.n_experts_:
            return gate
        drop = np.argpartition(-gate, self.top_k - 1, axis=1)[:, self.top_k :]
        np.put_along_axis(gate, drop, 0.0, axis=1)
        gate /= gate.sum(axis=1, keepdims=True)
        return gate

    def _routed_outputs(self, X, gate):
        """Expert outputs, each expert evaluated only where its gate is > 0."""
        rows = None
        if self.top_k is not None and self.top_k < self.n_experts_:
            rows = [np.flatnonzero(gate[:, k] > 0) for k in range(self.n_experts_)]
        return self._expert_outputs(X, rows=rows)

    def _check_X_y(self, X, y):
        check_is_fitted(self)
        _check_no_categorical(X)
        X, y = validate_data(
            self,
            X,
            y,
            reset=False,
            dtype=np.float64,
            multi_output=not self._is_classifier_moe,
            y_numeric=not self._is_classifier_moe,
        )
        return X, self._validate_targets(y, fitting=False)

    def score_samples(self, X, y):
        """Log-density of each target under the mixture, log p(y_i | x_i).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        X, Y = self._check_X_y(X, y)
        return self._e_step(X, Y, self._expert_outputs(X))[1]

    def n_parameters(self):
        """Number of free parameters: gate, experts and noise variances.

        The gate's count comes from the gate: ``(n_gate_features + 1) *
        (n_experts - 1)`` for a linear gate (``n_gate_features`` the columns
        it sees, see ``gate_features``), every weight and bias of a gating
        network, ``(n_gate_features + 1) * (branching - 1)`` per node of a
        hierarchical gate. Each expert is counted by
        :func:`expert_n_parameters` (which raises for experts whose count is
        not defined); a regressor adds one noise variance per expert and
        output.

        Returns
        -------
        n_parameters : int
        """
        check_is_fitted(self)
        n_gate = gate_n_parameters(self.gate_)
        n_classes = len(self.classes_) if self._is_classifier_moe else None
        n_experts = sum(expert_n_parameters(e, n_classes) for e in self.experts_)
        n_noise = 0 if self._is_classifier_moe else self.noise_variance_.size
        return n_gate + n_experts + n_noise

    def bic(self, X, y):
        """Bayesian information criterion on (X, y); lower is better.

        ``-2 log L + n_parameters * log(n_samples)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        bic : float
        """
        log_l = self.score_samples(X, y).sum()
        return float(-2 * log_l + self.n_parameters() * np.log(len(X)))

    def aic(self, X, y):
        """Akaike information criterion on (X, y); lower is better.

        ``-2 log L + 2 n_parameters``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        aic : float
        """
        return float(-2 * self.score_samples(X, y).sum() + 2 * self.n_parameters())

    def summary(self):
        """Per-expert summary of the training fit.

        Returns
        -------
        summary : pandas.DataFrame
            Indexed by expert name: ``mean_gate`` (mean gate weight over the
            training rows), ``effective_samples`` (summed responsibility times
            sample weight), ``log_likelihood`` (the expert's part of the
            training log-likelihood, ``sum_i w_i h_ik log p(y_i | x_i)``; the
            parts add up to ``log_likelihood_``), ``log_likelihood_share``
            (that part over the total) and, for a regressor, ``noise_std``
            (one column per output for multi-output targets).
        """
        check_is_fitted(self)
        stats = self._training_summary
        table = pd.DataFrame(
            {
                "mean_gate": stats["mean_gate"],
                "effective_samples": stats["effective_samples"],
                "log_likelihood": stats["log_likelihood"],
                "log_likelihood_share": stats["log_likelihood"]
                / stats["log_likelihood"].sum(),
            },
            index=pd.Index(self.expert_names_, name="expert"),
        )
        if not self._is_classifier_moe:
            std = np.sqrt(self._noise_variance_2d())
            if std.shape[1] == 1:
                table["noise_std"] = std[:, 0]
            else:
                for o in range(std.shape[1]):
                    table[f"noise_std_{o}"] = std[:, o]
        return table

    def responsibilities(self, X, y):
        """Posterior probability that each expert generated each target.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        X, Y = self._check_X_y(X, y)
        return self._e_step(X, Y, self._expert_outputs(X))[0]
