"""The classifier streamed over the chunks of Dask arrays.

EM for LogisticRegression experts and the linear gate, as the in-memory
classifier runs it (see ``skmoe/_em/_logistic.py``), with the rows read only
by passes over the chunks. Each warm M-step is one Newton step for every
expert and one for the gate, their gradients and losses from the pass that
made the responsibilities, their Hessians from a subsample held in memory.
One pass at the trial point then gives everything at once: each expert's
Armijo test and the gate's (their losses against the M-step's
responsibilities, recomputed in each chunk from their parameters), the
E-step there, and the sums of the next M-step. One pass per iteration, a
second only where a step is halved.

The chunks' labels are coded against the classes the first pass finds
(``np.unique`` of every chunk, merged).
"""

import copy
from typing import NamedTuple

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from .._em._logistic import (
    expert_arrays,
    logistic_penalty,
    steppable,
    streamed_logistic_steps,
)
from .._em._loop import EMResult
from .._em._start import dead_experts, reseed_thresholds, warn_reseeded
from .._experts import fit_experts
from .._gates._softmax import (
    finish_gate_step,
    gradient_newton_step,
    mean_penalised_loss,
    one_step_warm_gate,
)
from .._gates._solvers import ARMIJO, MAX_HALVINGS
from .._kernels import (
    classifier_pass,
    gate_objective,
    logistic_experts_pass,
    logistic_gradient_sums,
    one_numba_thread,
)
from .._likelihoods import CategoricalLikelihood
from .._scaling import unit_scale_for_constant
from .._validation import check_extremes
from ._dask import (
    SUBSAMPLE_ROWS,
    ChunkStream,
    Reseeded,
    StreamedEM,
    check_arrays,
    cold_gate_fit,
    combine_moments,
    fit_gate_streamed,
    gate_mass,
    initial_gate,
    moments_chunk,
    start_source,
)
from ._numpy import MixtureState, Prepared


def _labelled_chunk(X, y, w, classes):
    """A chunk's rows as float64, its labels as codes into ``classes``."""
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    return X, np.searchsorted(classes, np.asarray(y)).astype(np.intp), w


class _Model(NamedTuple):
    """The parameters a pass is made at, as the kernels read them.

    ``gate``: the linear gate's ``(mean, scale, theta)``; ``experts``: the
    experts' :class:`ExpertArrays` (None at a start, before any fit);
    ``floor``: the labels' log-probability floor.
    """

    gate: tuple
    experts: object
    floor: float

    @property
    def n_experts(self):
        return self.gate[2].shape[1] + 1

    def log_label(self, X, codes, s):
        """Each expert's log-probability of each row's label, its
        residuals ``p - onehot``, and its loss under weights ``s``."""
        arrays = self.experts
        n, K = X.shape[0], arrays.local.shape[0]
        log_label, residual = np.empty((n, K)), np.empty((n, arrays.D.shape[1]))
        losses = logistic_experts_pass(
            X,
            arrays.D,
            arrays.b,
            arrays.offsets,
            codes,
            arrays.local,
            s,
            log_label,
            residual,
        )
        return log_label, residual, losses

    def posterior(self, X, codes, w, log_label, previous=None):
        """:func:`classifier_pass` at these parameters (one expert: no gate)."""
        if self.n_experts == 1:
            row_ll = np.maximum(log_label[:, 0], self.floor)
            return np.ones((X.shape[0], 1)), row_ll, None, None, None, float(w @ row_ll)
        mean, scale, theta = self.gate
        return classifier_pass(
            X, mean, scale, theta, log_label, w, self.floor, previous
        )


class _EStep:
    """A chunk's responsibilities at a :class:`_Model` (a source, as the
    Dask backend's sources are: ``(X, codes[:, None], w, index)``)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, X, codes, w, index):
        codes = codes[:, 0]
        K = self.model.n_experts
        with one_numba_thread():
            log_label, _, _ = self.model.log_label(X, codes, np.zeros((len(w), K)))
            resp, row_ll, *_ = self.model.posterior(X, codes, w, log_label)
        return resp, row_ll


class _Sums(NamedTuple):
    """One pass's sums over the rows.

    At the pass's parameters with its responsibilities: the log-likelihood
    (total and per expert), the experts' weights and their class masses
    ``masses[c, k]``, the gate's unpenalised loss and gradient; the experts'
    losses and gradient sums ``X^T R`` and ``R``'s column sums (see
    :func:`logistic_gradient_sums`; None at a start). Against the
    responsibilities of the pass's ``previous`` source, where it had one:
    the gate's loss and the experts' (the Armijo tests of a trial point).
    And the responsibilities of the in-memory subsample's rows.
    """

    log_likelihood: float
    n_eff: np.ndarray
    expert_ll: np.ndarray
    masses: np.ndarray
    gate_loss: object
    gate_grad: object
    previous_gate_loss: object
    losses: object
    XtR: object
    col_sums: object
    trial_losses: object
    subsample_resp: object


def _classifier_chunk(X, y, w, index, classes, model, source, previous, rows):
    """A chunk's part of the :class:`_Sums` of one pass.

    The responsibilities are ``source``'s (a start, re-seeded ones) or,
    where it is None, the E-step at ``model``; ``previous`` (a source, or
    None) gives those the trial losses are taken against; ``rows = (chunk
    offsets, stride)`` pick the subsample's rows.
    """
    X, codes, w = _labelled_chunk(X, y, w, classes)
    n, K = X.shape[0], model.n_experts
    with one_numba_thread():
        before = None if previous is None else previous(X, codes[:, None], w, index)[0]
        log_label = residual = trial = None
        if model.experts is not None:
            s = np.zeros((n, K)) if before is None else before * w[:, None]
            log_label, residual, trial = model.log_label(X, codes, s)
            if before is None:
                trial = None
        previous_loss = None
        if source is None:
            resp, row_ll, gate_grad, previous_loss, gate_loss, ll = model.posterior(
                X, codes, w, log_label, before
            )
            if before is None:
                previous_loss = None
        else:
            resp, row_ll = source(X, codes[:, None], w, index)
            ll = float(w @ row_ll)
            gate_loss = gate_grad = None
            if K > 1:
                gate_loss, gate_grad = gate_objective(X, *model.gate, resp, w)
        S = resp * w[:, None]
        losses = XtR = col_sums = None
        if log_label is not None:
            losses, XtR, col_sums = logistic_gradient_sums(
                X, residual, log_label, S, model.experts.expert_of_column
            )
    masses = np.stack(
        [np.bincount(codes, weights=S[:, k], minlength=classes.size) for k in range(K)],
        axis=1,
    )
    offsets, stride = rows
    # a copy: a view would hold the whole chunk's array until the end
    subsample_resp = [resp[(-offsets[index]) % stride :: stride].copy()]
    return (
        ll,
        S.sum(axis=0),
        (w * row_ll) @ resp,
        masses,
        gate_loss,
        gate_grad,
        previous_loss,
        losses,
        XtR,
        col_sums,
        trial,
        subsample_resp,
    )


def _gate_chunk(X, y, w, index, classes, source, mean, scale, theta):
    """A chunk's gate cross-entropy and gradient at ``theta``."""
    X, codes, w = _labelled_chunk(X, y, w, classes)
    resp, _ = source(X, codes[:, None], w, index)
    return gate_objective(X, mean, scale, theta, resp, w)


def _gate_mass_chunk(X, y, w, index, gate_arrays):
    """A chunk's summed gate probabilities (:func:`gate_mass`)."""
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    return (gate_mass(X, w, gate_arrays),)


class ClassifierPosterior(NamedTuple):
    """A pass's responsibilities (a source computing them per chunk), its
    :class:`_Sums`, and the :class:`_Model` it was made at."""

    source: object
    stats: _Sums
    model: _Model


class StreamedClassifierBackend(StreamedEM):
    """EM's statistics over the chunks of Dask arrays (LogisticRegression
    experts, the linear gate).

    Parameters
    ----------
    stream : ChunkStream
        The chunks of X, the labels and the sample weights.
    setup : dict
        What the first pass gives: total weight, classes, chunk offsets and
        weights, the inputs' standardisation, the subsample.
    likelihood : CategoricalLikelihood
    templates : list of LogisticRegression
    settings : list of LogisticSettings
    make_gate : callable
    """

    def __init__(self, stream, setup, likelihood, templates, settings, make_gate):
        super().__init__(stream, setup, likelihood, templates, make_gate)
        self.settings = settings

    def _model(self, state):
        gate = state.gate
        arrays = None
        if state.experts is not None:
            arrays = expert_arrays(
                state.experts, self.setup["x_mean"].shape[0], self.setup["classes"].size
            )
        return _Model(
            (gate._mean, gate._scale, gate._theta),
            arrays,
            self.likelihood.log_label_floor,
        )

    def _pass(self, model, source=None, previous=None):
        """A pass at ``model``: its :class:`ClassifierPosterior`."""
        setup = self.setup
        parts = self._map_reduce(
            _classifier_chunk,
            setup["classes"],
            model,
            source,
            previous,
            (setup["offsets"], setup["stride"]),
        )
        stats = _Sums(*parts[:-1], subsample_resp=np.concatenate(parts[-1]))
        return ClassifierPosterior(
            _EStep(model) if source is None else source, stats, model
        )

    def warm_state(self, estimator):
        return MixtureState(estimator.experts_, estimator.gate_, None)

    def start(self, init, restart, random_state, gate_seed):
        gate = initial_gate(self.make_gate, gate_seed, self.setup, self.n_experts)
        source = start_source(
            self.setup, self.n_experts, init, restart, random_state, targets=False
        )
        model = _Model((gate._mean, gate._scale, gate._theta), None, 0.0)
        return MixtureState(None, gate, None), self._pass(model, source=source)

    def reseed(self, posterior):
        source, stats, model = posterior
        K = self.n_experts
        dead = dead_experts(stats.n_eff, self.total_weight)
        if dead.size == 0 or dead.size == K:
            return posterior
        setup = self.setup
        if model.experts is not None:
            Xs, codes_s, ws = setup["subsample"]
            _, row_ll = source(Xs, codes_s[:, None], ws, None)
            thresholds = reseed_thresholds(row_ll, ws, dead.size, K)
            source = Reseeded(source, dead, thresholds=thresholds)
        else:
            source = Reseeded(
                source,
                dead,
                chunk_weights=setup["chunk_weights"],
                share=self.total_weight / (2 * K),
            )
        warn_reseeded(dead, stacklevel=4)
        return self._pass(model, source=source)

    def m_step(self, state, posterior, warm_gate):
        """The experts' and the gate's M-steps.

        Warm, every expert takes one Newton step from the pass's sums
        (:func:`streamed_logistic_steps`) and the gate one
        (:func:`gradient_newton_step`), all tested by the pass at the trial
        point (:meth:`_line_search`). A run's first M-step fits the experts
        and the gate on the in-memory subsample (no pass), as does a warm
        one for the experts where one's classes changed (its rows gained
        or lost a class).
        """
        setup = self.setup
        source, stats, model = posterior
        Xs, codes_s, ws = setup["subsample"]
        Ss = stats.subsample_resp * ws[:, None]
        steps = None
        if (
            warm_gate
            and model.experts is not None
            and state.experts is not None
            and steppable(state.experts, stats.masses)
        ):
            steps = streamed_logistic_steps(
                self.templates,
                self.settings,
                state.experts,
                model.experts,
                (Xs, codes_s, Ss),
                setup["standardised"],
                (stats.losses, stats.XtR, stats.col_sums),
                stats.n_eff,
            )
            experts = None
        else:
            self.counts["subsample_expert_fits"] = (
                self.counts.get("subsample_expert_fits", 0) + 1
            )
            experts = fit_experts(
                self.templates,
                Xs,
                codes_s,
                Ss * (self.total_weight / ws.sum()),
                is_classifier=True,
                y_is_1d=True,
                previous=state.experts if warm_gate else None,
                standardised=setup["standardised"],
            )
        if not warm_gate:
            gate = cold_gate_fit(
                state.gate,
                stats.subsample_resp,
                setup["subsample"],
                self.total_weight,
                self.counts,
            )
            return MixtureState(experts, gate, None)
        newton = None
        if one_step_warm_gate(state.gate):
            gate = copy.deepcopy(state.gate)
            newton = gradient_newton_step(
                gate,
                Xs,
                ws,
                stats.gate_grad,
                stats.gate_loss,
                self.counts,
                total=self.total_weight,
            )
        else:
            gate = fit_gate_streamed(
                state.gate,
                self._map_reduce,
                (_gate_chunk, setup["classes"], source),
                stats.gate_loss,
                stats.gate_grad,
                setup["subsample"],
                self.total_weight,
            )
        return self._line_search(state, posterior, steps, experts, gate, newton)

    def _line_search(self, before, posterior, steps, experts, gate, newton):
        """Take the experts' steps and the gate's, each backtracking on its
        own Armijo condition, all trial points tested by one pass.

        Each pass is at every untested step (halved where it failed); its
        losses against the M-step's responsibilities (``posterior``'s
        source, recomputed per chunk) test them, and where all are taken
        it is the E-step there, handed to :meth:`e_step`. ``steps`` (None:
        the experts are ``experts``, fixed) and ``newton`` (the gate's
        ``(step, slope, loss, done)``; None: the gate is fitted already).
        The full steps are tried first without the tests
        (:meth:`_full_step_ascends`).
        """
        theta0 = gate._theta
        step = slope = loss = None
        t_gate, gate_done = 0.0, True
        if newton is not None:
            gate.n_iter_ = 0
            step, slope, loss, done = newton
            if not done:
                t_gate, gate_done = 1.0, False

        def point():
            trial = theta0 if t_gate == 0 else theta0 + t_gate * step
            return MixtureState(
                experts if steps is None else steps.experts(), gate, None
            ), trial

        def finish(state, tried):
            self._handed = (state, tried)
            if newton is not None:
                finish_gate_step(gate, self.counts)
            return state

        if not (gate_done and (steps is None or steps.done)):
            state, gate._theta = point()
            tried = self._full_step_ascends(before, posterior, state)
            if tried is not None:
                if steps is not None:
                    steps.take()
                gate.n_iter_ = int(not gate_done)
                return finish(state, tried)
        for _ in range(MAX_HALVINGS):
            if gate_done and (steps is None or steps.done):
                break
            state, gate._theta = point()
            tried = self._pass(self._model(state), previous=posterior.source)
            if steps is not None:
                steps.test(tried.stats.trial_losses)
            if not gate_done:
                trial_loss = mean_penalised_loss(
                    gate, gate._theta, tried.stats.previous_gate_loss, self.total_weight
                )
                if trial_loss <= loss + ARMIJO * t_gate * slope:
                    gate_done, gate.n_iter_ = True, 1
                else:
                    t_gate *= 0.5
            if gate_done and (steps is None or steps.done):
                # the pass was made at the point taken: the next E-step
                return finish(state, tried)
        if steps is not None and not steps.done:
            steps.give_up()
        if not gate_done:
            t_gate = 0.0
        state, gate._theta = point()
        if newton is not None:
            finish_gate_step(gate, self.counts)
        return state

    def _full_step_ascends(self, before, posterior, state):
        """The pass at the full steps, where EM's objective has not fallen
        there; else None.

        The Armijo tests need the last responsibilities, recomputed in each
        chunk from their parameters (an E-step more per chunk); the
        penalised log-likelihood of the pass at the full steps needs
        nothing more. Where it has not fallen, the steps ascend what EM
        monitors and are taken, and the pass is the E-step; where it has,
        the line search tests every step as in memory. Where the maths
        allow both, these are the steps the tests take; they differ only
        where a full step fails its test and the objective rises all the
        same.
        """
        tried = self._pass(self._model(state))
        rise = (tried.stats.log_likelihood - self.penalty(state)) - (
            posterior.stats.log_likelihood - self.penalty(before)
        )
        return tried if rise >= 0 else None

    def e_step(self, state):
        handed, self._handed = self._handed, None
        if handed is not None and handed[0] is state:
            return handed[1]
        return self._pass(self._model(state))

    def penalty(self, state):
        """The gate's penalty and the experts' (which their M-steps minimise)."""
        value = state.gate.penalty()
        if state.experts is not None:
            value += logistic_penalty(state.experts, self.settings)
        return value

    def result(self, state, posterior, *, curves, n_iter, converged):
        stats = posterior.stats
        (gate_mass,) = self._map_reduce(_gate_mass_chunk, posterior.model.gate)
        summary = {
            "mean_gate": gate_mass / self.total_weight,
            "effective_samples": stats.n_eff,
            "log_likelihood": stats.expert_ll,
        }
        return EMResult(
            experts=state.experts,
            gate=state.gate,
            scale=None,
            log_likelihood=float(stats.log_likelihood),
            log_likelihood_curve=np.asarray(curves[0]),
            objective_curve=np.asarray(curves[1]),
            n_iter=n_iter,
            converged=converged,
            summary=summary,
            counts=dict(self.counts),
        )


def _setup_chunk(X, y, w, index, rows):
    """A chunk's moments of X and checks (:func:`moments_chunk`), its labels
    (all and of positive weight), its non-finite labels and its subsample
    rows' labels (a one-item list)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    moments, weights, subsample = moments_chunk(
        X, np.empty((X.shape[0], 0)), w, index, rows
    )
    bad = 0
    if y.dtype.kind in "fc":
        bad = int(np.count_nonzero(~np.isfinite(y)))
        y = np.where(np.isfinite(y), y, 0)  # np.unique of NaNs: not labels
    offsets, stride = rows
    sub = y[(-offsets[index]) % stride :: stride].copy()
    return moments, weights, subsample, np.unique(y), np.unique(y[w > 0]), bad, [sub]


def _combine_setup(a, b):
    return (
        *combine_moments(a[:3], b[:3]),
        np.union1d(a[3], b[3]),
        np.union1d(a[4], b[4]),
        a[5] + b[5],
        a[6] + b[6],
    )


def prepare_streamed_classifier(estimator, X, y, sample_weight, *, warm):
    """Check the Dask arrays, find the classes and take the inputs' moments,
    in one pass; see :class:`Prepared`."""
    X, y, sample_weight, _ = check_arrays(
        estimator, X, y, sample_weight, warm, labels=True
    )
    stream = ChunkStream(X, y, sample_weight)
    offsets = np.r_[0, np.cumsum(X.chunks[0])[:-1]]
    step = max(1, -(-X.shape[0] // SUBSAMPLE_ROWS))
    moments, chunk_weights, subsample, classes, weighted, bad_labels, y_sub = (
        stream.map_reduce(_setup_chunk, (offsets, step), combine=_combine_setup)
    )
    n_rows, n_pos, total, mean, m2, _, bad, negative, low, high = moments
    if bad:
        raise ValueError(
            f"Input contains NaN or infinity: {bad} value(s) in X or sample_weight."
        )
    if bad_labels:
        raise ValueError(f"Input y contains NaN or infinity: {bad_labels} label(s).")
    check_extremes(low, high, "X")
    if negative:
        raise ValueError(f"sample_weight has {negative} negative value(s).")
    if total <= 0:
        raise ValueError("sample_weight sums to zero; nothing to fit.")
    check_classification_targets(classes)
    if weighted.size < 2:
        raise ValueError(
            "The classifier needs samples of at least 2 classes in the data, but "
            f"the data contains only one class: {weighted[0]!r}."
        )
    likelihood = CategoricalLikelihood(classes)
    x_std = np.sqrt(m2 / total)
    Xs, _, ws = (np.concatenate(part) for part in zip(*subsample, strict=True))
    codes_s = np.searchsorted(classes, np.concatenate(y_sub)).astype(np.intp)
    setup = {
        "total": float(total),
        "classes": classes,
        "offsets": offsets,
        "chunk_weights": np.asarray(chunk_weights),
        "x_mean": mean,
        "x_std": x_std,
        # the logistic experts' standardisation, as in memory
        "standardised": (mean, unit_scale_for_constant(mean, x_std)),
        # k-means clusters the inputs alone, standardised
        "kmeans_scaling": (
            mean,
            np.where(x_std == 0, 1.0, x_std),
            np.zeros(0),
            np.ones(0),
            1.0,
        ),
        "subsample": (Xs, codes_s, ws),
        "stride": step,
    }

    def build(*, templates, expert_info, make_gate, n_jobs, tree_branching):
        return StreamedClassifierBackend(
            stream, setup, likelihood, templates, expert_info, make_gate
        )

    attributes = {"n_features_in_": X.shape[1], "feature_names_in_": None}
    return Prepared(likelihood, attributes, int(n_pos), build)
