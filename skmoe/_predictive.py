"""The predictive distribution of a mixture of experts, row by row.

Each row ``i`` of the inputs below is a one-dimensional mixture with weights
``weights[i]``, means ``means[i]`` and standard deviations ``stds[i]``
(all of shape (n_rows, n_components)). scipy.stats has no vectorised quantile
function for a mixture of normals, so the root of the CDF is found here by
bisection, all rows at once.

The mixtures of the other families (Poisson and Gamma experts) are objects
with the same methods as :class:`GaussianMixture`: quantiles by bisection on
the mixture CDF that scipy.stats gives (on the integers for counts), modes
by the mixture's own EM, and draws.
"""

import numpy as np
from scipy import stats
from scipy.special import logsumexp, ndtr


def mixture_cdf(x, weights, means, stds):
    """CDF of each row's mixture at ``x`` (shape (n_rows,) or (n_rows, m))."""
    if x.ndim == 1:
        return np.sum(weights * ndtr((x[:, None] - means) / stds), axis=1)
    z = (x[:, :, None] - means[:, None, :]) / stds[:, None, :]
    return np.sum(weights[:, None, :] * ndtr(z), axis=2)


def mixture_quantiles(weights, means, stds, quantiles, *, n_bisections=100):
    """Quantiles of each row's mixture, shape (n_rows, n_quantiles).

    Bisection on the CDF between bounds that hold every component's mass
    but 1e-23; 100 halvings leave an interval below double precision.
    """
    quantiles = np.asarray(quantiles, dtype=float)
    active = weights > 0
    lo = np.min(np.where(active, means - 10 * stds, np.inf), axis=1)
    hi = np.max(np.where(active, means + 10 * stds, -np.inf), axis=1)
    lo = np.repeat(lo[:, None], quantiles.size, axis=1)
    hi = np.repeat(hi[:, None], quantiles.size, axis=1)
    for _ in range(n_bisections):
        mid = 0.5 * (lo + hi)
        below = mixture_cdf(mid, weights, means, stds) < quantiles[None, :]
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def mixture_log_density(x, weights, means, stds):
    """Log-density of each row's mixture at ``x`` (shape (n_rows, m))."""
    z = (x[:, :, None] - means[:, None, :]) / stds[:, None, :]
    log_comp = -0.5 * z**2 - np.log(stds[:, None, :] * np.sqrt(2 * np.pi))
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)[:, None, :]
    joint = log_w + log_comp
    peak = np.max(joint, axis=2, keepdims=True)
    return (peak + np.log(np.sum(np.exp(joint - peak), axis=2, keepdims=True)))[:, :, 0]


def mixture_modes(weights, means, stds, *, n_iter=200):
    """Highest mode of each row's mixture, shape (n_rows,).

    Mean-shift from every component mean (the fixed-point iteration for the
    stationary points of a Gaussian mixture climbs to a mode from any start),
    then the climbed point with the highest density.
    """
    x = means.copy()
    prec = 1.0 / stds**2
    for _ in range(n_iter):
        z = (x[:, :, None] - means[:, None, :]) * np.sqrt(prec)[:, None, :]
        resp = weights[:, None, :] * np.sqrt(prec)[:, None, :] * np.exp(-0.5 * z**2)
        num = np.sum(resp * (prec * means)[:, None, :], axis=2)
        den = np.sum(resp * prec[:, None, :], axis=2)
        x = np.where(den > 0, num / np.where(den > 0, den, 1.0), x)
    best = np.argmax(mixture_log_density(x, weights, means, stds), axis=1)
    return x[np.arange(x.shape[0]), best]


def sample_mixture(weights, means, stds, n_samples, random_state):
    """Draws from each row's mixture, shape (n_rows, n_samples)."""
    n_rows = weights.shape[0]
    u = random_state.random_sample((n_rows, n_samples))
    cum = np.cumsum(weights, axis=1)
    comp = np.minimum(
        (u[:, :, None] > cum[:, None, :]).sum(axis=2), weights.shape[1] - 1
    )
    rows = np.arange(n_rows)[:, None]
    noise = random_state.standard_normal((n_rows, n_samples))
    return means[rows, comp] + stds[rows, comp] * noise


def _draw_components(weights, n_samples, random_state):
    """Each draw's component, as :func:`sample_mixture` draws them.

    Shape (n_rows, n_samples).
    """
    u = random_state.random_sample((weights.shape[0], n_samples))
    cum = np.cumsum(weights, axis=1)
    return np.minimum(
        (u[:, :, None] > cum[:, None, :]).sum(axis=2), weights.shape[1] - 1
    )


class GaussianMixture:
    """Each row's mixture of normals, for the regressor's predictive methods.

    Parameters
    ----------
    weights, means, stds : ndarray of shape (n_rows, n_components)
    """

    def __init__(self, weights, means, stds):
        self.weights, self.means, self.stds = weights, means, stds

    def quantiles(self, quantiles):
        return mixture_quantiles(self.weights, self.means, self.stds, quantiles)

    def log_density(self, x):
        """The mixture log-density of each row at ``x``, (n_rows, m)."""
        return mixture_log_density(x, self.weights, self.means, self.stds)

    def modes(self):
        return mixture_modes(self.weights, self.means, self.stds)

    def sample(self, n_samples, random_state):
        return sample_mixture(
            self.weights, self.means, self.stds, n_samples, random_state
        )


class _GLMMixture:
    """A mixture of one scipy.stats family per row: CDF, quantiles, modes, draws.

    Subclasses give ``_dist(means, shapes)``, the frozen scipy.stats
    distribution of components of those means (and shapes), and the mode
    search's start and step. Components of zero weight (``top_k``) get a
    valid mean, so that their terms are 0, not NaN.
    """

    discrete = False
    shapes = None

    def __init__(self, weights, means):
        self.weights = weights
        self.means = np.where(weights > 0, means, 1.0)

    def _components(self, index=(slice(None), None, slice(None))):
        """The components, broadcast as ``means[index]`` (default (n, 1, K))."""
        shapes = None if self.shapes is None else self.shapes[index]
        return self._dist(self.means[index], shapes)

    def _log_joint(self, x):
        """``log g_k + log p_k(x)``, shape (n_rows, m, n_components)."""
        comp = self._components()
        x = x[:, :, None]
        log_p = comp.logpmf(x) if self.discrete else comp.logpdf(x)
        with np.errstate(divide="ignore"):
            return np.log(self.weights)[:, None, :] + log_p

    def cdf(self, x):
        """The mixture CDF of each row at ``x``, of shape (n_rows, m)."""
        return np.sum(
            self.weights[:, None, :] * self._components().cdf(x[:, :, None]), axis=2
        )

    def log_density(self, x):
        """The mixture log-density (log-pmf) of each row at ``x``, (n_rows, m)."""
        return logsumexp(self._log_joint(x), axis=2)

    def quantiles(self, quantiles, *, n_bisections=100):
        """Quantiles of each row's mixture, shape (n_rows, n_quantiles).

        The mixture's q-quantile lies between the least and the greatest of
        its components' q-quantiles (below the least every component's CDF
        is under q, at the greatest every one has reached q): bisection on
        the mixture CDF in that bracket, on the integers for a discrete
        family (the smallest count whose CDF reaches q), else to double
        precision.
        """
        q = np.asarray(quantiles, dtype=float)
        per_component = self._components().ppf(q[None, :, None])
        active = (self.weights > 0)[:, None, :]
        lo = np.min(np.where(active, per_component, np.inf), axis=2)
        hi = np.max(np.where(active, per_component, -np.inf), axis=2)
        if self.discrete:
            # invariant: F(lo - 1) < q <= F(hi); ends when lo == hi
            while np.any(lo < hi):
                mid = np.floor(0.5 * (lo + hi))
                reached = self.cdf(mid) >= q[None, :]
                hi = np.where(reached, mid, hi)
                lo = np.where(reached, lo, mid + 1)
            return lo
        for _ in range(n_bisections):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q[None, :]
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def modes(self, *, n_iter=1000):
        """Highest mode of each row's mixture, shape (n_rows,).

        The mixture's own EM for its mode, from every component's mode or
        mean: with ``r_k`` the components' shares of the density at ``x``,
        the next ``x`` maximises ``sum_k r_k log p_k(x)`` (``_step``), which
        never lowers the mixture density (Jensen's bound, as for the
        Gaussian's mean-shift); then the climbed point of highest density.
        """
        x = self._start()
        for _ in range(n_iter):
            joint = self._log_joint(x)
            log_density = logsumexp(joint, axis=2, keepdims=True)
            resp = np.exp(joint - np.where(np.isfinite(log_density), log_density, 0))
            new = self._step(resp)
            done = np.all(np.abs(new - x) <= 1e-12 * np.abs(x))
            x = new
            if done:
                break
        best = np.argmax(self.log_density(x), axis=1)
        return x[np.arange(x.shape[0]), best]

    def sample(self, n_samples, random_state):
        """Draws from each row's mixture, shape (n_rows, n_samples)."""
        comp = _draw_components(self.weights, n_samples, random_state)
        rows = np.arange(self.weights.shape[0])[:, None]
        drawn = self._components((rows, comp)).rvs(random_state=random_state)
        return np.asarray(drawn, dtype=np.float64)


class PoissonMixture(_GLMMixture):
    """Each row's mixture of Poisson distributions with means ``means``.

    Parameters
    ----------
    weights, means : ndarray of shape (n_rows, n_components)
    """

    discrete = True

    def _dist(self, means, shapes):
        return stats.poisson(means)

    def _start(self):
        return np.floor(self.means)

    def _step(self, resp):
        # sum_k r_k log Poisson(x; mu_k) = x log(lam) - log(x!) + const with
        # lam the responsibility-weighted geometric mean of the means: its
        # maximiser over the counts is the mode of Poisson(lam), floor(lam)
        with np.errstate(divide="ignore"):
            log_mu = np.log(self.means)[:, None, :]
        terms = np.where(resp > 0, resp * log_mu, 0.0)
        return np.floor(np.exp(terms.sum(axis=2)))


class GammaMixture(_GLMMixture):
    """Each row's mixture of Gamma distributions: means ``means``, shapes ``shapes``.

    Component k is ``Gamma(shape a_k, scale mu_k / a_k)``.

    Parameters
    ----------
    weights, means, shapes : ndarray of shape (n_rows, n_components)
    """

    def __init__(self, weights, means, shapes):
        super().__init__(weights, means)
        self.shapes = np.broadcast_to(shapes, self.means.shape)

    def _dist(self, means, shapes):
        return stats.gamma(shapes, scale=means / shapes)

    def _start(self):
        return self.means.copy()

    def _step(self, resp):
        # sum_k r_k log Gamma(x) = sum_k r_k ((a_k - 1) log x - a_k x / mu_k)
        # + const peaks at x = sum r (a - 1) / sum r a / mu, or at 0 where
        # that is not positive
        a = self.shapes[:, None, :]
        num = np.sum(resp * (a - 1.0), axis=2)
        den = np.sum(resp * a / self.means[:, None, :], axis=2)
        return np.where(num > 0, num / np.where(den > 0, den, 1.0), 0.0)

    def modes(self, *, n_iter=1000):
        """Highest mode of each row's mixture, shape (n_rows,).

        A component of shape below 1 has an infinite density at 0, which is
        then the mixture's highest mode; otherwise as for any family.
        """
        modes = super().modes(n_iter=n_iter)
        spike = np.any((self.weights > 0) & (self.shapes < 1), axis=1)
        return np.where(spike, 0.0, modes)
