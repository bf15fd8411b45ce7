"""The in-memory backend: NumPy arrays, numba kernels, any expert and gate.

It supplies the statistics of EM's iterations (see ``skmoe/_em/_loop.py``)
for data held in memory. Its workspace, the linear gate's
:class:`SoftmaxGateFit` and the experts' outputs and gate log-probabilities
handed from each M-step to the next E-step, belongs to one run: ``fresh()``
gives a copy without it for each restart.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from .._em._logistic import (
    logistic_penalty,
    logistic_settings,
    newton_step_logistic_experts,
)
from .._em._loop import EMResult
from .._em._start import (
    dead_experts,
    initial_responsibilities,
    reseed_dead_experts,
    smoothed_gate_targets,
    warn_reseeded,
)
from .._em._stats import fast_linear_alpha, gram_shifts
from .._experts import fit_experts, fits_exactly
from .._gates._builder import ColumnSubsetGate
from .._gates._softmax import (
    SoftmaxGate,
    SoftmaxGateFit,
    gradient_newton_step,
    line_search_gate,
    one_step_warm_gate,
    routed_newton_step,
    warm_newton_step,
)
from .._kernels import classifier_pass, em_pass, routed_em_pass
from .._routing import Routes, routed_counts
from .._scaling import weighted_standardisation
from .._sparse import is_sparse
from .._validation import validate_fit_data

# The first (cold) gate fit, on the start's hard clusters, runs on at most
# this many rows (an evenly strided subsample, weights scaled to the whole),
# then takes one warm Newton step on every row: at 1e6 rows Newton from zero
# took 6 steps over all rows, about 2 s, for a gate EM then moves anyway.
COLD_GATE_MAX_ROWS = 100_000

# Sparse X with more columns than this starts k-means from this many leading
# singular directions instead of its columns made dense.
_SPARSE_START_COLUMNS = 64


def _is_linear_softmax(gate):
    """Whether ``gate`` is the linear softmax gate, on all columns or some."""
    if type(gate) is ColumnSubsetGate:
        gate = gate.gate
    return type(gate) is SoftmaxGate


# L-BFGS iterations of a warm gate M-step under sparse routing.
_ROUTED_GATE_LBFGS_ITER = 10


class MixtureState(NamedTuple):
    """The parameters of a mixture: fitted experts, gate and scale."""

    experts: list
    gate: object
    scale: object


class Posterior(NamedTuple):
    """Responsibilities (n, K) and per-row log-likelihoods (n,)."""

    resp: np.ndarray
    row_ll: np.ndarray


class _PassStats(NamedTuple):
    """What a fused EM pass leaves for the next M-step (see ``em_pass``).

    ``theta`` is the gate's parameter array the pass was made at;
    ``log_likelihood`` and ``expert_ll`` its log-likelihood and each
    expert's part of it.
    """

    posterior: Posterior
    grams: np.ndarray
    gate_sums: np.ndarray
    gate_loss: float
    theta: np.ndarray
    log_likelihood: float
    expert_ll: np.ndarray


class _RoutedPass(NamedTuple):
    """What a routed EM pass leaves for the next M-step (see ``routed_em_pass``).

    ``routes`` and ``targets`` (the responsibilities at them, in the routes'
    order) are the gate's routed objective; ``gate_grad``,
    ``gate_curvature`` and ``gate_loss`` its gradient, curvature blocks and
    value at the gate's parameter array ``theta``; ``experts`` the experts
    the pass was made at.
    """

    posterior: Posterior
    grams: np.ndarray
    routes: Routes
    targets: np.ndarray
    gate_grad: np.ndarray
    gate_curvature: np.ndarray
    gate_loss: float
    theta: np.ndarray
    log_likelihood: float
    experts: list


class _ClassifierPass(NamedTuple):
    """What the classifier's fused pass leaves (see ``classifier_pass``).

    The posterior at the gate's parameter array ``theta`` and the experts
    ``experts``, and its log-likelihood; for the next M-step the gate's
    unpenalised summed gradient ``gate_grad`` and loss ``gate_loss``
    against its responsibilities.
    """

    posterior: Posterior
    theta: np.ndarray
    experts: list
    gate_grad: np.ndarray
    gate_loss: float
    log_likelihood: float


def linear_expert_arrays(experts, n_features, n_outputs):
    """The linear experts' coefficients as :func:`em_pass` takes them.

    ``coef`` of shape (n_features, n_experts * n_outputs), expert-major, and
    ``intercept`` of shape (n_experts * n_outputs,).
    """
    d, q = n_features, n_outputs
    coef = np.concatenate([np.reshape(e.coef_, (q, d)) for e in experts]).T
    intercept = np.concatenate([np.broadcast_to(e.intercept_, (q,)) for e in experts])
    return coef, intercept


def _shallow_copy_gate(gate):
    """A copy of a :class:`SoftmaxGate` whose arrays a fit then rebinds.

    Copies its ``__dict__`` (``copy.copy`` goes through pickling), so that
    the previous state's gate stays as it was; a deep copy was 1% of a
    1e4-row fit.
    """
    copied = object.__new__(SoftmaxGate)
    copied.__dict__.update(gate.__dict__)
    return copied


@dataclass
class Prepared:
    """Validated data of one fit, before the backend is built.

    Attributes
    ----------
    likelihood : likelihood object
    attributes : dict
        Fitted attributes that validation gives (``n_features_in_``,
        ``feature_names_in_``).
    n_positive : int
        Rows of positive weight.
    build : callable
        ``build(templates=, expert_info=, make_gate=, n_jobs=,
        tree_branching=)``: the backend.
    """

    likelihood: object
    attributes: dict
    n_positive: int
    build: Callable


def prepare_in_memory(estimator, X, y, sample_weight, *, warm):
    """Validate data for the in-memory backend; see :class:`Prepared`."""
    # sparse X was checked against the configuration (check_sparse_input)
    X, y, sample_weight, attributes = validate_fit_data(
        estimator, X, y, sample_weight, reset=not warm, accept_sparse="csr"
    )
    likelihood, Y = estimator._likelihood_for(y, sample_weight)

    def build(*, templates, expert_info, make_gate, n_jobs, tree_branching):
        return InMemoryBackend(
            X,
            Y,
            sample_weight,
            likelihood,
            templates,
            make_gate,
            n_jobs,
            tree_branching,
            expert_info,
        )

    return Prepared(likelihood, attributes, int(np.count_nonzero(sample_weight)), build)


class InMemoryBackend:
    """EM's statistics for data in memory.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray
        Internal targets, as the likelihood encodes them.
    sample_weight : ndarray of shape (n_samples,)
    likelihood : likelihood object
        The experts' likelihood (Gaussian, categorical, ...).
    templates : list of estimators
        The experts' unfitted templates.
    make_gate : callable
        ``make_gate(seed)``: an unfitted gate.
    n_jobs : int or None
        Jobs for the experts' fits.
    tree_branching : int or None
        The branching of a hierarchical gate (for the k-means start).
    expert_info : list or None
        What the capability table says of each expert on this path
        (gradient training's penalties).
    """

    def __init__(
        self,
        X,
        Y,
        sample_weight,
        likelihood,
        templates,
        make_gate,
        n_jobs=None,
        tree_branching=None,
        expert_info=None,
    ):
        self.X, self.Y, self.sample_weight = X, Y, sample_weight
        self.likelihood = likelihood
        self.templates = templates
        self.make_gate = make_gate
        self.n_jobs = n_jobs
        self.tree_branching = tree_branching
        self.expert_info = expert_info
        self.total_weight = float(sample_weight.sum())
        # unit weights (the usual case): the responsibilities themselves
        self.unit_weights = bool(sample_weight[0] == 1 and np.all(sample_weight == 1))
        self._gate_fit = None
        self._handed = None  # (state, outputs, log_gate) from the last M-step
        self.counts = {}  # the work of a run (see SoftmaxGateFit), for benchmarks
        # linear experts, a likelihood whose M-step their Gram matrices hold
        # (the Gaussian) and the softmax gate: one fused pass over the rows
        # per iteration (see _fused_m_step)
        # (the fused pass reads dense rows: sparse X takes the separate steps)
        self._fusable = (
            likelihood.gram_sufficient
            and not is_sparse(X)
            and all(fast_linear_alpha(t) is not None for t in templates)
        )
        self._shifts = gram_shifts(X, Y, templates) if self._fusable else None
        # logistic experts' Newton M-step works on standardised inputs
        self._standardised = self._logistic = None
        if likelihood.is_classifier:
            self._standardised = weighted_standardisation(X, sample_weight)
            self._logistic = [logistic_settings(t) for t in templates]
        # every expert a LogisticRegression the engine fits: their warm
        # M-steps are one batched Newton step (see newton_step_logistic_experts)
        # (its kernels read dense rows: sparse X goes to the experts' own fit)
        self._all_logistic = (
            self._logistic is not None
            and not is_sparse(X)
            and all(s is not None for s in self._logistic)
        )
        self._logistic_outputs = None  # its LogisticOutputs at the last experts
        self._logistic_spare = None  # the one before, whose arrays it reuses
        # soft EM's first fit of the linear gate on smoothed targets (see
        # smoothed_gate_targets); gradient training's start turns it off
        self.smooth_first_gate = True
        self._pass = None  # the _PassStats of the last fused pass
        self._classifier_pass = None  # the _ClassifierPass of the last one
        self._soft = True  # whether the last assign left the responsibilities
        self.router = None  # sparse routing in training (see use_router)
        self._routes = None  # the Routes of the last E-step
        self._routed_fusable = False  # one routed pass per iteration
        self._routed_pass = None  # the _RoutedPass of the last one

    def use_router(self, router):
        """Route rows sparsely in training (a :class:`~skmoe._routing.Router`).

        The E-step runs on the gate restricted to each row's experts, each
        expert evaluated on its rows only; the M-step fits each expert on
        its rows. The fused passes, which read every expert on every row,
        are not used; where the dense pass would be (linear experts, the
        Gaussian) and top-k routing trains the gate, one routed pass per
        iteration makes the E-step and the sums of the M-step after it (see
        :meth:`_routed_m_step`).
        """
        self.router = router
        self._routed_fusable = (
            self._fusable
            and router.kind == "top_k"
            and router.routes_train_the_gate
            and router.k < self.n_experts  # else dense EM's (exact) M-step
        )
        self._fusable = self._all_logistic = False

    @property
    def n_experts(self):
        return len(self.templates)

    @property
    def exact_m_steps(self):
        """Whether every expert's M-step is exact, so that EM never descends
        (sparse routing changes the rows of the model as the gate moves: not
        an exact EM step)."""
        return self.router is None and all(fits_exactly(t) for t in self.templates)

    @property
    def fits_every_expert(self):
        """Whether the engine fits every expert itself (closed form or Newton)."""
        return self._fusable or self._all_logistic

    def warm_state(self, estimator):
        """The parameters of a fitted ``estimator``, to continue from."""
        return MixtureState(
            estimator.experts_, estimator.gate_, self.likelihood.scale_of(estimator)
        )

    def fresh(self):
        """A copy for one run, with an empty workspace."""
        backend = copy.copy(self)
        backend._gate_fit = None
        backend._handed = None
        backend._pass = backend._classifier_pass = None
        backend._logistic_outputs = backend._logistic_spare = None
        backend._routes = backend._routed_pass = None
        backend.counts = {}
        return backend

    # -- the steps of an iteration

    def start(self, init, restart, random_state, gate_seed):
        """Unfitted parameters and the starting responsibilities."""
        gate = self.make_gate(gate_seed)
        tree = None
        if self.tree_branching is not None:
            columns = getattr(gate, "features", None)
            tree = (self.tree_branching, columns)
        resp = initial_responsibilities(
            self._start_inputs(),
            self.likelihood.kmeans_columns(self.Y),
            self.sample_weight,
            self.n_experts,
            init,
            restart,
            random_state,
            tree,
        )
        # nothing is explained yet: an expert that the start left empty
        # (fewer distinct rows than experts) is re-seeded on the first rows
        return MixtureState(None, gate, None), Posterior(resp, np.zeros(len(resp)))

    def _start_inputs(self):
        """The rows k-means starts from: X, or dense columns standing for it.

        Sparse X has its few columns made dense for the start; with many,
        its leading singular directions after scaling each column to unit
        spread (k-means distances need dense rows; the start is a start).
        """
        X = self.X
        if not is_sparse(X):
            return X
        if X.shape[1] <= _SPARSE_START_COLUMNS:
            return X.toarray()
        _, scale = weighted_standardisation(X, self.sample_weight)
        svd = TruncatedSVD(_SPARSE_START_COLUMNS, random_state=0)
        return svd.fit_transform(X @ sp.diags(1.0 / scale))

    def assign(self, posterior, training, random_state):
        """The responsibilities the M-step uses under ``training``.

        Soft EM uses them as they are; classification EM replaces each row by
        its most probable expert (argmax), stochastic EM by an expert drawn
        from the row's responsibilities.
        """
        resp = posterior.resp
        self._soft = training == "em"
        if training == "cem":
            labels = resp.argmax(axis=1)
        elif training == "sem":
            u = random_state.random_sample(resp.shape[0])
            labels = (np.cumsum(resp, axis=1) < u[:, None]).sum(axis=1)
            labels = np.minimum(labels, resp.shape[1] - 1)
        else:
            return posterior
        hard = np.zeros_like(resp)
        hard[np.arange(resp.shape[0]), labels] = 1.0
        return Posterior(hard, posterior.row_ll)

    def _stats_of(self, posterior):
        """The fused pass's statistics when it made ``posterior``, else None."""
        stats = self._pass
        return stats if stats is not None and stats.posterior is posterior else None

    def reseed(self, posterior):
        """Collapsed experts re-seeded on the worst-explained rows (warns)."""
        stats = self._stats_of(posterior)
        routed = self._routed_pass
        if stats is None and routed is not None and routed.posterior is posterior:
            stats = routed
        if stats is not None:
            # the Gram matrices hold the experts' weights: no pass to test them
            d = self.X.shape[1]
            if not dead_experts(stats.grams[:, d, d], self.total_weight).size:
                return posterior
        resp, dead = reseed_dead_experts(
            posterior.resp, posterior.row_ll, self.sample_weight
        )
        if not dead.size:
            return posterior
        warn_reseeded(dead, stacklevel=4)
        # the re-seeded experts' rows lie outside the routes: this M-step's
        # gate fits the dense responsibilities
        self._routes = None
        return Posterior(resp, posterior.row_ll)

    def m_step(self, state, posterior, warm_gate):
        """Refit the experts, their scale and the gate on the responsibilities."""
        stats = self._pass
        if (
            warm_gate
            and stats is not None
            and stats.posterior is posterior
            and one_step_warm_gate(state.gate)
        ):
            return self._fused_m_step(state, posterior, stats)
        routed = self._routed_pass
        if warm_gate and routed is not None and routed.posterior is posterior:
            return self._routed_m_step(state, posterior, routed)
        X, Y, sw = self.X, self.Y, self.sample_weight
        resp = posterior.resp
        weights = resp if self.unit_weights else resp * sw[:, None]
        likelihood = self.likelihood
        self.counts["m_steps"] = self.counts.get("m_steps", 0) + 1
        stepped = None
        if warm_gate and self._all_logistic:
            stepped = newton_step_logistic_experts(
                self.templates,
                self._logistic,
                X,
                Y,
                weights,
                self._standardised,
                state.experts,
                self._logistic_outputs,
                self._logistic_spare,
            )
        if stepped is not None:
            # the E-step reads the labels' log-probabilities the step left
            experts, stats, outputs = stepped.experts, None, None
        else:
            rows = None
            if self.router is not None:
                # the responsibilities are zero outside each expert's rows
                rows = [np.flatnonzero(w > 0) for w in np.ascontiguousarray(weights.T)]
            experts, stats = fit_experts(
                self.templates,
                X,
                Y,
                weights,
                is_classifier=likelihood.is_classifier,
                y_is_1d=likelihood.y_is_1d,
                n_jobs=self.n_jobs,
                return_stats=True,
                previous=state.experts if warm_gate else None,
                standardised=self._standardised,
                rows=rows,
            )
            outputs = None
            if stats is None:
                # the scale's M-step reads the outputs at the rows of weight
                outputs = likelihood.outputs(experts, X, rows)
        last = self._logistic_outputs
        if stepped is None or last is None or stepped.residual is not last.residual:
            # the arrays of the step before last: free for the next one
            self._logistic_spare = last
        self._logistic_outputs = stepped
        scale = likelihood.m_step_scale(Y, outputs, weights, stats)
        held = self._classifier_pass
        if (
            stepped is not None
            and held is not None
            and held.posterior is posterior
            and held.theta is state.gate._theta
            and self._soft
            and one_step_warm_gate(state.gate)
        ):
            # the gate's step from the last pass's gradient, each trial one
            # pass that is also the E-step at the stepped experts
            new = MixtureState(experts, _shallow_copy_gate(state.gate), scale)
            newton = gradient_newton_step(
                new.gate, X, sw, held.gate_grad, held.gate_loss, self.counts
            )
            line_search_gate(
                new.gate,
                newton,
                resp,
                lambda theta, previous: self._classifier_pass_at(
                    new, theta, stepped.log_label, previous
                ),
                self.total_weight,
                self.counts,
            )
            self._handed = (new, None, None)
            return new
        weight_sums = None if stats is None else stats.weight_sums
        if (
            not warm_gate
            and self._soft
            and self.smooth_first_gate
            and _is_linear_softmax(state.gate)
        ):
            # a soft-EM run's first fit of the linear gate: targets it
            # cannot separate exactly (stochastic and classification EM
            # draw from or round the responsibilities instead, and other
            # gates are not convex in their parameters)
            resp, weight_sums = smoothed_gate_targets(resp), None
        gate, log_gate = self._m_step_gate(state.gate, resp, warm_gate, weight_sums)
        if stepped is None and stats is not None and rows is None:
            if self._fusable and self._soft and one_step_warm_gate(gate):
                # the next E-step is a fused pass, which makes the means
                # itself (the outputs, 0.14 s of a 1e6 x 20 x 8 start, would
                # go unread); the last pass is stale, so it cannot take that
                self._pass = None
            else:
                outputs = likelihood.outputs(experts, X, rows)
        new = MixtureState(experts, gate, scale)
        # routed, the E-step evaluates the experts at the new gate's rows
        self._handed = (new, None if self.router else outputs, log_gate)
        return new

    def _m_step_gate(self, gate, resp, warm_gate, weight_sums):
        """The refitted gate (a new object) and its log-probabilities on X.

        The linear softmax gate goes through the run's :class:`SoftmaxGateFit`,
        which hands the E-step the log-probabilities of Newton's last
        evaluation and starts from those the previous M-step left (two
        passes over ``X`` fewer per iteration); where the experts' fit gives
        the weights' sums (linear experts: their Gram matrices hold them),
        its first gradient needs no pass over ``X`` at all. Other gates are
        fitted as they are, and the E-step computes their log-probabilities
        (None here).
        """
        X, sw = self.X, self.sample_weight
        if type(gate) is not SoftmaxGate:
            # other gates refit nested objects in place: a deep copy
            gate = copy.deepcopy(gate)
            gate.fit(X, resp, sw, warm_start=warm_gate)
            return gate, None
        gate = _shallow_copy_gate(gate)
        if self._gate_fit is None:
            self._gate_fit = self._new_gate_fit()
        routes = self._routes
        if (
            warm_gate
            and routes is not None
            and self.router.routes_train_the_gate
            and not is_sparse(X)
            and not routes.covers_every_expert(resp.shape[1])
        ):
            # the routed model's own gate objective at the E-step's routes:
            # reads n * k logits, not n * K (every route covering every
            # expert, it is the dense objective, fitted below)
            targets = resp[routes.row_of_route(), routes.experts]
            self._gate_fit.fit_routed(
                gate, routes.indptr, routes.experts, targets, _ROUTED_GATE_LBFGS_ITER
            )
            return gate, None
        n = X.shape[0]
        if not warm_gate and n > COLD_GATE_MAX_ROWS:
            rows = slice(None, None, -(-n // COLD_GATE_MAX_ROWS))
            sw_rows = sw[rows]
            if sw_rows.sum() > 0:
                scale = sw.sum() / sw_rows.sum()
                # contiguous once, not at each of the fit's passes
                SoftmaxGateFit(
                    X[rows] if is_sparse(X) else np.ascontiguousarray(X[rows]),
                    sw_rows * scale,
                    keep=False,
                    counts=self.counts,
                ).fit(gate, np.ascontiguousarray(resp[rows]), False)
                warm_gate = True
        # with the sums the next first gradient reads no probabilities: the
        # fit then does not write them (a pass of stores over an (n, K) array)
        self._gate_fit.fit(
            gate,
            resp,
            warm_gate,
            target_sums=weight_sums,
            keep_proba=weight_sums is None,
        )
        return gate, self._gate_fit.log_proba

    def _new_gate_fit(self):
        """The run's :class:`SoftmaxGateFit` on the rows."""
        fit = SoftmaxGateFit(self.X, self.sample_weight, counts=self.counts)
        if self.router is not None:
            # routed targets are zero outside each row's experts: the gate
            # chased them for all its iterations (86 evaluations per M-step
            # against 15 on dense targets, 1e5 rows, 32 experts); a partial
            # M-step still lowers its objective
            fit.warm_lbfgs_max_iter = _ROUTED_GATE_LBFGS_ITER
        return fit

    def _fused_pass(self, state, theta, previous):
        """One fused pass at the experts of ``state`` and the gate at ``theta``.

        Kept as the next M-step's statistics; returns them.
        """
        gate = state.gate
        coef, intercept = linear_expert_arrays(
            state.experts, self.X.shape[1], self.Y.shape[1]
        )
        resp, row_ll, grams, gate_sums, scalars, expert_ll = em_pass(
            self.X,
            self.Y,
            self.sample_weight,
            gate._mean,
            gate._scale,
            theta,
            coef,
            intercept,
            state.scale,
            previous,
            *self._shifts,
        )
        self.counts["fused_passes"] = self.counts.get("fused_passes", 0) + 1
        self._pass = _PassStats(
            Posterior(resp, row_ll),
            grams,
            gate_sums,
            scalars[1],
            theta,
            scalars[2],
            expert_ll,
        )
        return self._pass, scalars[0]

    def _fused_m_step(self, state, posterior, stats):
        """The M-step from the last fused pass's statistics, and the next pass.

        The experts are solved from the Gram matrices of ``posterior`` (which
        the pass that computed it made), their noise variances come from the
        same matrices, and the gate takes the one warm Newton step of
        :class:`SoftmaxGateFit` (``warm_max_iter=1``) from the pass's sums:
        no pass over the rows so far. The trial point's line-search test (its
        loss against ``posterior``) is then computed by the next pass, with
        the E-step at the new parameters and the statistics for the M-step
        after: one pass per iteration, and a second only where the line
        search halves the step. The same iteration as the unfused M-step and
        E-step, its sums taken in another order.
        """
        X, sw = self.X, self.sample_weight
        resp = posterior.resp
        experts, scale, closed = self._experts_from_grams(resp, stats.grams)
        gate = _shallow_copy_gate(state.gate)
        step, slope, loss, done = warm_newton_step(
            gate,
            X,
            sw,
            stats.gate_sums,
            closed.weight_sums,
            stats.gate_loss,
            self.counts,
        )
        new = MixtureState(experts, gate, scale)
        line_search_gate(
            gate,
            (step, slope, loss, done),
            resp,
            lambda theta, previous: self._fused_pass(new, theta, previous)[1],
            self.total_weight,
            self.counts,
        )
        self._handed = (new, None, None)
        return new

    def _experts_from_grams(self, resp, grams):
        """The linear experts solved from a pass's Gram matrices of ``resp``,
        their noise variances, and the solve's statistics (counted as an
        M-step)."""
        Y = self.Y
        weights = resp if self.unit_weights else resp * self.sample_weight[:, None]
        self._count("m_steps", 1)
        experts, closed = fit_experts(
            self.templates,
            self.X,
            Y,
            weights,
            is_classifier=False,
            y_is_1d=self.likelihood.y_is_1d,
            return_stats=True,
            grams=grams,
            shifts=self._shifts,
        )
        return experts, self.likelihood.m_step_scale(Y, None, weights, closed), closed

    def _routed_pass_at(self, state, theta, previous=None):
        """The routed EM pass at ``state``'s experts and the gate at
        ``theta``, kept for the next M-step; the routed gate's loss at
        ``previous`` (the routes' experts and targets of the pass before,
        (n, k) each; NaN without them)."""
        gate = state.gate
        coef, intercept = linear_expert_arrays(
            state.experts, self.X.shape[1], self.Y.shape[1]
        )
        n, k = self.X.shape[0], self.router.k
        (
            experts,
            route_resp,
            resp,
            row_ll,
            grams,
            gate_grad,
            gate_curvature,
            (gate_loss, log_likelihood, previous_loss),
            _,
        ) = routed_em_pass(
            self.X,
            self.Y,
            self.sample_weight,
            gate._mean,
            gate._scale,
            theta,
            coef,
            intercept,
            state.scale,
            k,
            previous,
            *self._shifts,
        )
        self._count("routed_passes", 1)
        routes = Routes(np.arange(0, n * k + 1, k), experts.ravel(), self.n_experts)
        self._routes = routes
        self._routed_pass = _RoutedPass(
            Posterior(resp, row_ll),
            grams,
            routes,
            route_resp.ravel(),
            gate_grad,
            gate_curvature,
            gate_loss,
            theta,
            log_likelihood,
            state.experts,
        )
        return previous_loss

    def _routed_m_step(self, state, posterior, routed):
        """The M-step from the last routed pass's sums, and the next pass.

        The experts are solved from its Gram matrices, with their noise
        variances, and the gate takes one block-Newton step on the routed
        objective at the pass's routes (:func:`routed_newton_step`),
        its trial point tested by the next routed pass (which computes the
        loss at the old routes from the logits it reads anyway) that is also
        the E-step at the new parameters: one pass over the rows per
        iteration, a second only where the step is halved.
        """
        experts, scale, _ = self._experts_from_grams(posterior.resp, routed.grams)
        new = MixtureState(experts, _shallow_copy_gate(state.gate), scale)
        k = self.router.k
        previous = (routed.routes.experts.reshape(-1, k), routed.targets.reshape(-1, k))
        routed_newton_step(
            new.gate,
            routed.gate_grad,
            routed.gate_curvature,
            routed.gate_loss,
            lambda theta: self._routed_pass_at(new, theta, previous),
            self.counts,
        )
        self._handed = (new, None, None)
        return new

    def _classifier_pass_at(self, state, theta, log_label, previous):
        """The classifier's fused pass at ``state``'s experts and the gate at
        ``theta``, kept for the next M-step; the gate's loss against
        ``previous`` (NaN without it)."""
        gate = state.gate
        resp, row_ll, grad, previous_loss, loss, ll = classifier_pass(
            self.X,
            gate._mean,
            gate._scale,
            theta,
            log_label,
            self.sample_weight,
            self.likelihood.log_label_floor,
            previous,
        )
        self._count("classifier_passes", 1)
        self._classifier_pass = _ClassifierPass(
            Posterior(resp, row_ll), theta, state.experts, grad, loss, ll
        )
        return previous_loss

    def _count(self, name, value):
        self.counts[name] = self.counts.get(name, 0) + value

    def e_step(self, state):
        """Responsibilities and per-row log-likelihoods at ``state``."""
        handed = self._handed
        if (
            handed is not None
            and handed[0] is state
            and handed[1] is None
            and self._pass is not None
        ):
            # the fused M-step's pass made the E-step already
            return self._pass.posterior
        if self._fusable and self._soft and one_step_warm_gate(state.gate):
            # the E-step, and the next M-step's statistics, in one pass
            return self._fused_pass(state, state.gate._theta, None)[0].posterior
        held = self._classifier_pass
        if (
            held is not None
            and held.experts is state.experts
            and held.theta is getattr(state.gate, "_theta", None)
        ):
            # the fused M-step's last pass made the E-step already
            return held.posterior
        stepped = self._logistic_outputs
        if (
            stepped is not None
            and stepped.experts is state.experts
            and self._soft
            and one_step_warm_gate(state.gate)
        ):
            # the E-step, and the next M-step's gate gradient, in one pass
            theta = state.gate._theta
            self._classifier_pass_at(state, theta, stepped.log_label, None)
            return self._classifier_pass.posterior
        if stepped is not None and stepped.experts is state.experts:
            log_gate = handed[2] if handed is not None and handed[0] is state else None
            log_gate = self._log_gate(state) if log_gate is None else log_gate
            return Posterior(
                *self.likelihood.posterior_from_log_label(log_gate, stepped.log_label)
            )
        if self._routed_fusable and type(state.gate) is SoftmaxGate:
            # the routed E-step, and the next M-step's sums, in one pass
            # (made already where the M-step's accepted trial was this state)
            held = self._routed_pass
            if (
                held is None
                or held.theta is not state.gate._theta
                or held.experts is not state.experts
            ):
                self._routed_pass_at(state, state.gate._theta)
            return self._routed_pass.posterior
        outputs = log_gate = None
        if handed is not None and handed[0] is state:
            _, outputs, log_gate = handed
        if log_gate is None:
            log_gate = self._log_gate(state)
        if self.router is not None:
            log_gate, routes = self.router.route(log_gate, self.sample_weight)
            self._routes = routes
            outputs = self.likelihood.outputs(state.experts, self.X, routes.rows)
        elif outputs is None:
            outputs = self.likelihood.outputs(state.experts, self.X)
        resp, row_ll = self.likelihood.posterior(log_gate, outputs, self.Y, state.scale)
        return Posterior(resp, row_ll)

    def _log_gate(self, state):
        """The gate's log-probabilities on X, remembered for its warm M-step."""
        log_gate = state.gate.predict_log_proba(self.X)
        self._count("gate_predict_rows", self.X.shape[0])
        if type(state.gate) is SoftmaxGate:
            if self._gate_fit is None:
                self._gate_fit = self._new_gate_fit()
            # a warm M-step starts from them
            self._gate_fit.remember(state.gate, log_gate)
        return log_gate

    # -- what the loop monitors and keeps

    def log_likelihood(self, posterior):
        # the fused passes summed it
        stats = self._stats_of(posterior)
        if stats is not None:
            return stats.log_likelihood
        held = self._classifier_pass
        if held is not None and held.posterior is posterior:
            return held.log_likelihood
        routed = self._routed_pass
        if routed is not None and routed.posterior is posterior:
            return routed.log_likelihood
        return float(self.sample_weight @ posterior.row_ll)

    def classification_log_likelihood(self, posterior):
        """``sum_i w_i max_k log(g_k p_k)``: log p(y | x) + log max_k h_k."""
        resp, row_ll = posterior
        return float(self.sample_weight @ (row_ll + np.log(resp.max(axis=1))))

    def penalty(self, state):
        """The penalties the M-step minimises: the gate's, and those of the
        logistic experts it fits by Newton's method."""
        value = state.gate.penalty()
        if self._logistic is not None and state.experts is not None:
            value += logistic_penalty(state.experts, self._logistic)
        return value

    def result(self, state, posterior, *, curves, n_iter, converged):
        """The :class:`EMResult` of a run ending at ``(state, posterior)``."""
        sw = self.sample_weight
        resp, row_ll = posterior
        stats = self._stats_of(posterior)
        if stats is not None and stats.theta is state.gate._theta:
            # the pass at these parameters summed them all
            d = self.X.shape[1]
            gate_mass = stats.gate_sums[d]
            mass = np.r_[self.total_weight - gate_mass.sum(), gate_mass]
            summary = {
                "mean_gate": mass / self.total_weight,
                "effective_samples": stats.grams[:, d, d].copy(),
                "log_likelihood": stats.expert_ll,
            }
        else:
            summary = {
                "mean_gate": sw / sw.sum() @ state.gate.predict_proba(self.X),
                "effective_samples": sw @ resp,
                "log_likelihood": (sw * row_ll) @ resp,
            }
        if self._routes is not None:
            summary["routed_rows"] = routed_counts(self._routes.rows, sw)
        return EMResult(
            experts=state.experts,
            gate=state.gate,
            scale=state.scale,
            log_likelihood=self.log_likelihood(posterior),
            log_likelihood_curve=np.asarray(curves[0]),
            objective_curve=np.asarray(curves[1]),
            n_iter=n_iter,
            converged=converged,
            summary=summary,
            counts=dict(self.counts),
        )
