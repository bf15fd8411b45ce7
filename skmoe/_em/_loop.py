"""The EM loop, written once: soft, classification and stochastic EM.

A backend supplies the statistics of an iteration (see
``skmoe/_backends``): where EM starts, the E-step, the M-step, hard
assignments for the classification and stochastic variants, and the
re-seeding of collapsed experts. The loop monitors the objective, stops,
keeps the best iteration where the M-step does not promise an ascent, and
runs the ``n_init`` restarts; it returns an :class:`EMResult`, the one
object that sets fitted attributes, and only once the whole fit succeeded.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed

# Where an iteration need not ascend (stochastic EM's draws; experts such as
# trees whose weighted fit is not the weighted maximum-likelihood one), EM
# stops when its best penalised log-likelihood has not risen by more than
# ``tol`` (per unit weight) for this many iterations, and keeps that best.
NO_GAIN_WINDOW = 20


@dataclass
class EMResult:
    """A finished fit: parameters, curves and the data-dependent attributes.

    Attributes
    ----------
    experts, gate : fitted estimators
    scale : object
        The likelihood's scale parameters (noise variances) or None.
    log_likelihood : float
        ``sum_i w_i log p(y_i | x_i)`` at the kept parameters.
    log_likelihood_curve, objective_curve : ndarray
    n_iter : int
    converged : bool
    summary : dict
        Per-expert training summary (``BaseMixtureOfExperts.summary``).
    attributes : dict
        Further fitted attributes, set as they are (``n_features_in_``,
        ``classes_``, ...); a value of None deletes the attribute.
    counts : dict
        The work the run did, as the backend counts it (gate evaluations,
        Hessian rows, M-steps, passes...) and the seconds of its start and
        of its iterations, kept as ``_fit_counts`` for benchmarks.
    """

    experts: list
    gate: object
    scale: object
    log_likelihood: float
    log_likelihood_curve: np.ndarray
    objective_curve: np.ndarray
    n_iter: int
    converged: bool
    summary: dict
    attributes: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def apply_to(self, estimator):
        """Set every fitted attribute of ``estimator`` from this result."""
        for name, value in self.attributes.items():
            if value is None:
                if name in vars(estimator):
                    delattr(estimator, name)
            else:
                setattr(estimator, name, value)
        estimator.experts_ = self.experts
        estimator.gate_ = self.gate
        estimator.log_likelihood_ = self.log_likelihood
        estimator.log_likelihood_curve_ = self.log_likelihood_curve
        estimator.objective_curve_ = self.objective_curve
        estimator.n_iter_ = self.n_iter
        estimator.converged_ = self.converged
        estimator._training_summary = self.summary
        estimator._fit_counts = self.counts
        return estimator


@dataclass(frozen=True)
class EMSettings:
    """What the loop needs of the estimator's parameters."""

    training: str = "em"
    max_iter: int = 200
    tol: float = 1e-6
    init: str = "kmeans"
    verbose: int = 0


def record_iteration(settings, n_iter, ll, monitored, curves, total, prev):
    """Append an EM iteration to the curves; return (objective, change).

    ``monitored`` is the penalised quantity the training ascends (summed);
    ``objective`` is it per unit weight, ``change`` its change since
    ``prev``. Prints the iteration when ``settings.verbose``.
    """
    curves[0].append(ll)
    curves[1].append(monitored)
    objective = monitored / total
    change = objective - prev
    if settings.verbose:
        print(
            f"[skmoe] iteration {n_iter:4d}  log-likelihood {ll:.6f}  "
            f"change {change:.3e}"
        )
    return objective, change


def run_em(backend, settings, random_state, restart=0, warm_state=None):
    """One EM run (soft, classification or stochastic, per ``training``).

    Soft EM monitors the penalised log-likelihood and stops when it changes
    by less than ``tol`` per unit weight. Classification EM monitors the
    penalised classification log-likelihood ``sum_i w_i max_k log(g_k
    p_k)``, which its C- and M-steps never decrease, and stops likewise.
    Stochastic EM's draws keep the log-likelihood moving, and experts whose
    weighted fit is not the weighted maximum-likelihood one (trees, boosting,
    neighbours: ``backend.exact_m_steps`` is False) can make it fall at any
    iteration: those runs stop when the best penalised objective has not
    risen by ``tol`` for ``NO_GAIN_WINDOW`` iterations (or when it stops
    changing), and keep the parameters of that best iteration.

    Parameters
    ----------
    backend : backend
        Its ``fresh()`` copy is used, so that runs side by side share no
        workspace.
    settings : EMSettings
    random_state : RandomState
        This run's own: the gate's seed, the start and any draws.
    restart : int, default=0
        Which restart this is (restarts after the first start at random).
    warm_state : object, default=None
        Parameters to start from (``warm_start``) instead of a start.

    Returns
    -------
    result : EMResult
    """
    backend = backend.fresh()
    training = settings.training
    started = time.perf_counter()
    if warm_state is None:
        gate_seed = random_state.randint(np.iinfo(np.int32).max)
        state, posterior = backend.start(
            settings.init, restart, random_state, gate_seed
        )
        warm = False
    else:
        state, posterior, warm = warm_state, backend.e_step(warm_state), True
    total = backend.total_weight
    iterating = time.perf_counter()
    stochastic = training == "sem"
    # backends that fit only exact experts (the streamed and Array API ones:
    # linear experts) need not say so
    keeps_best = stochastic or not getattr(backend, "exact_m_steps", True)
    curves = ([], [])
    prev = best = -np.inf
    last_gain = 0
    kept = None
    converged = False
    for n_iter in range(1, settings.max_iter + 1):
        posterior = backend.assign(posterior, training, random_state)
        posterior = backend.reseed(posterior)
        state = backend.m_step(state, posterior, warm or n_iter > 1)
        posterior = backend.e_step(state)
        ll = backend.log_likelihood(posterior)
        if training == "cem":
            value = backend.classification_log_likelihood(posterior)
        else:
            value = ll
        # monitored per unit weight, penalty included: EM ascends this
        objective, change = record_iteration(
            settings, n_iter, ll, value - backend.penalty(state), curves, total, prev
        )
        if keeps_best:
            if objective > best:
                kept = (state, posterior)
                if objective > best + settings.tol:
                    last_gain = n_iter
                best = objective
            # stochastic EM's draws change the objective even at its optimum
            fixed = not stochastic and abs(change) < settings.tol
            if fixed or n_iter - last_gain >= NO_GAIN_WINDOW:
                converged = True
                break
        elif abs(change) < settings.tol:
            converged = True
            break
        prev = objective
    if kept is not None:
        state, posterior = kept
    result = backend.result(
        state, posterior, curves=curves, n_iter=n_iter, converged=converged
    )
    # the start (k-means, set-up) and the iterations, timed apart
    result.counts["start_s"] = iterating - started
    result.counts["iterations_s"] = time.perf_counter() - iterating
    return result


def run_restarts(run, backend, settings, seeds, *, n_jobs=None, warm_state=None):
    """``run`` from each seed (restart ``i`` from ``seeds[i]``); the best result.

    One run goes in this process, so that the experts' own fits can spread
    out; several go through joblib (``n_jobs``, or a
    ``joblib.parallel_backend`` such as Dask's), or side by side on threads
    where the backend's work runs elsewhere (``restarts_in_threads``: the
    Dask backend's passes, on its scheduler). The best is the highest
    log-likelihood at the kept parameters, the first of equals, as in a
    serial loop.
    """
    if len(seeds) == 1:
        results = [_one_run(run, backend, settings, seeds[0], 0, warm_state)]
    else:
        # a backend whose work runs elsewhere (the Dask one's passes) runs
        # its restarts side by side on threads, whatever n_jobs says
        threads = getattr(backend, "restarts_in_threads", False)
        parallel = (
            Parallel(n_jobs=len(seeds), backend="threading")
            if threads
            else Parallel(n_jobs=n_jobs)
        )
        results = parallel(
            delayed(_one_run)(run, backend, settings, seed, restart, warm_state)
            for restart, seed in enumerate(seeds)
        )
    best = max(range(len(results)), key=lambda i: (results[i].log_likelihood, -i))
    return results[best]


def _one_run(run, backend, settings, seed, restart, warm_state):
    """One restart on a copy of ``backend`` (a module function: joblib pickles it)."""
    return run(backend, settings, np.random.RandomState(seed), restart, warm_state)
