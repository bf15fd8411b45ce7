"""Displays of a fitted mixture of experts, in scikit-learn's Display style.

Matplotlib is an optional dependency (``pip install skmoe[plot]``); it is
imported only when a display is drawn.
"""

import warnings

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._predictive import mixture_log_density


def check_matplotlib_support(caller_name):
    """Raise a clear ImportError when matplotlib is missing.

    scikit-learn's twin of this helper is private, hence our own.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{caller_name} requires matplotlib; install it with "
            "`pip install skmoe[plot]`."
        ) from exc


def _grid_rows(X, columns, values):
    """Rows at the median of X, with ``columns`` set to ``values``."""
    X = np.asarray(X, dtype=float)
    base = np.median(X, axis=0)
    rows = np.tile(base, (len(values[0]), 1))
    for col, vals in zip(columns, values, strict=True):
        rows[:, col] = vals
    return rows


def _axis_grid(x, resolution, margin=0.05):
    lo, hi = np.min(x), np.max(x)
    pad = margin * (hi - lo if hi > lo else 1.0)
    return np.linspace(lo - pad, hi + pad, resolution)


def _gate_axes(estimator, features):
    """The two columns a gate-region plot shows (see ``from_estimator``)."""
    seen = getattr(estimator.gate_, "features_", None)
    if features is None:
        if seen is None:
            return 0, 1
        others = [j for j in range(estimator.n_features_in_) if j not in seen]
        return tuple(int(j) for j in [*seen, *others][:2])
    if seen is not None:
        unseen = [int(f) for f in features if f not in seen]
        if unseen:
            warnings.warn(
                f"The gate does not see feature(s) {unseen} (gate_features); "
                "its regions are constant along that axis.",
                UserWarning,
                stacklevel=3,
            )
    return features


class GateRegionsDisplay:
    """Which expert the gate trusts most, over two input features.

    Use :meth:`from_estimator`. The other features are held at their median.

    Parameters
    ----------
    xx, yy : ndarray of shape (resolution, resolution)
        The grid over the two features.
    expert : ndarray of shape (resolution, resolution)
        Index of the expert with the largest gate weight at each grid point.
    gate_max : ndarray of shape (resolution, resolution)
        That largest gate weight (how sure the gate is).
    X : ndarray of shape (n_samples, 2)
        The two features of the data shown as points.
    expert_names : list of str
    feature_names : tuple of str

    Attributes
    ----------
    surface_ : matplotlib QuadMesh
        The coloured regions.
    scatter_ : matplotlib PathCollection
        The data points.
    ax_, figure_ : matplotlib Axes and Figure
    """

    def __init__(self, xx, yy, expert, gate_max, X, expert_names, feature_names):
        self.xx, self.yy = xx, yy
        self.expert, self.gate_max = expert, gate_max
        self.X = X
        self.expert_names = expert_names
        self.feature_names = feature_names

    @classmethod
    def from_estimator(
        cls, estimator, X, features=None, *, grid_resolution=100, ax=None
    ):
        """Compute the gate regions of a fitted estimator and draw them.

        Parameters
        ----------
        estimator : fitted MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        X : array-like of shape (n_samples, n_features)
        features : pair of int, default=None
            Column indices of the two features on the axes. None means the
            first two columns the gate sees (see ``gate_features``; the
            first two columns when the gate sees them all). A column the gate
            does not see gives regions constant along its axis, with a
            warning.
        grid_resolution : int, default=100
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : GateRegionsDisplay
        """
        check_matplotlib_support("GateRegionsDisplay.from_estimator")
        check_is_fitted(estimator)
        X = np.asarray(X, dtype=float)
        f0, f1 = _gate_axes(estimator, features)
        g0 = _axis_grid(X[:, f0], grid_resolution)
        g1 = _axis_grid(X[:, f1], grid_resolution)
        xx, yy = np.meshgrid(g0, g1)
        rows = _grid_rows(X, (f0, f1), (xx.ravel(), yy.ravel()))
        gate = estimator.predict_gate(rows)
        names = getattr(estimator, "feature_names_in_", None)
        feature_names = (
            (str(names[f0]), str(names[f1]))
            if names is not None
            else (f"x{f0}", f"x{f1}")
        )
        display = cls(
            xx,
            yy,
            gate.argmax(axis=1).reshape(xx.shape),
            gate.max(axis=1).reshape(xx.shape),
            X[:, [f0, f1]],
            list(estimator.expert_names_),
            feature_names,
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the regions and the points.

        Parameters
        ----------
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : GateRegionsDisplay
        """
        check_matplotlib_support("GateRegionsDisplay.plot")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap

        if ax is None:
            _, ax = plt.subplots()
        K = len(self.expert_names)
        colors = plt.get_cmap("tab10")(np.arange(K) % 10)
        cmap = ListedColormap(colors)
        self.surface_ = ax.pcolormesh(
            self.xx,
            self.yy,
            self.expert,
            cmap=cmap,
            vmin=-0.5,
            vmax=K - 0.5,
            alpha=0.35,
            shading="auto",
        )
        self.scatter_ = ax.scatter(
            self.X[:, 0], self.X[:, 1], s=6, c="k", alpha=0.5, linewidths=0
        )
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=colors[k], alpha=0.5) for k in range(K)
        ]
        ax.legend(handles, self.expert_names, title="largest gate", loc="best")
        ax.set_xlabel(self.feature_names[0])
        ax.set_ylabel(self.feature_names[1])
        self.ax_, self.figure_ = ax, ax.figure
        return self


class ExpertFitDisplay:
    """Each expert's fit over one feature, with the mixture density shaded.

    For a fitted :class:`~skmoe.MixtureOfExpertsRegressor` with a single
    target. Use :meth:`from_estimator`; the other features are held at their
    median.

    Parameters
    ----------
    grid : ndarray of shape (resolution,)
        Values of the feature.
    y_grid : ndarray of shape (y_resolution,)
        Target values at which the density is evaluated.
    density : ndarray of shape (y_resolution, resolution)
        Predictive density p(y | x) on the grid.
    expert_means : ndarray of shape (resolution, n_experts)
    gate : ndarray of shape (resolution, n_experts)
    x, y : ndarray of shape (n_samples,)
        The data shown as points.
    expert_names : list of str
    feature_name : str

    Attributes
    ----------
    density_ : matplotlib QuadMesh
    lines_ : list of matplotlib Line2D, one per expert
    scatter_ : matplotlib PathCollection
    ax_, figure_ : matplotlib Axes and Figure
    """

    def __init__(
        self,
        grid,
        y_grid,
        density,
        expert_means,
        gate,
        x,
        y,
        expert_names,
        feature_name,
    ):
        self.grid, self.y_grid, self.density = grid, y_grid, density
        self.expert_means, self.gate = expert_means, gate
        self.x, self.y = x, y
        self.expert_names = expert_names
        self.feature_name = feature_name

    @classmethod
    def from_estimator(
        cls, estimator, X, y, feature=0, *, grid_resolution=200, ax=None
    ):
        """Compute the experts' fits and the density, and draw them.

        Parameters
        ----------
        estimator : fitted MixtureOfExpertsRegressor
            With a one-dimensional target.
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        feature : int, default=0
            Column index of the feature on the x axis.
        grid_resolution : int, default=200
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ExpertFitDisplay
        """
        check_matplotlib_support("ExpertFitDisplay.from_estimator")
        check_is_fitted(estimator)
        if not hasattr(estimator, "noise_variance_") or np.ndim(y) != 1:
            raise ValueError(
                "ExpertFitDisplay needs a fitted MixtureOfExpertsRegressor and a "
                "one-dimensional y."
            )
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        grid = _axis_grid(X[:, feature], grid_resolution)
        rows = _grid_rows(X, (feature,), (grid,))
        comp = estimator.predict_components(rows)
        y_grid = _axis_grid(y, grid_resolution)
        log_dens = mixture_log_density(
            np.tile(y_grid, (len(grid), 1)), comp.weight, comp.mean, comp.std
        )
        names = getattr(estimator, "feature_names_in_", None)
        display = cls(
            grid,
            y_grid,
            np.exp(log_dens).T,
            comp.mean,
            comp.weight,
            X[:, feature],
            y,
            list(estimator.expert_names_),
            str(names[feature]) if names is not None else f"x{feature}",
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the density, the experts' lines and the points.

        Parameters
        ----------
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ExpertFitDisplay
        """
        check_matplotlib_support("ExpertFitDisplay.plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        self.density_ = ax.pcolormesh(
            self.grid, self.y_grid, self.density, cmap="Greys", shading="auto"
        )
        self.scatter_ = ax.scatter(self.x, self.y, s=4, c="tab:orange", alpha=0.4)
        self.lines_ = []
        for k, name in enumerate(self.expert_names):
            # fade each expert's line where the gate does not trust it
            (line,) = ax.plot(self.grid, self.expert_means[:, k], lw=1.5, label=name)
            trusted = np.where(self.gate[:, k] > 0.5, self.expert_means[:, k], np.nan)
            ax.plot(self.grid, trusted, lw=3.5, color=line.get_color())
            self.lines_.append(line)
        ax.set_ylim(self.y_grid[0], self.y_grid[-1])
        ax.set_xlabel(self.feature_name)
        ax.set_ylabel("y")
        ax.legend(loc="best", title="expert (thick: gate > 0.5)")
        self.ax_, self.figure_ = ax, ax.figure
        return self


class ConvergenceDisplay:
    """The training log-likelihood at each EM iteration.

    Parameters
    ----------
    log_likelihood_curve : ndarray of shape (n_iter,)

    Attributes
    ----------
    line_ : matplotlib Line2D
    ax_, figure_ : matplotlib Axes and Figure
    """

    def __init__(self, log_likelihood_curve):
        self.log_likelihood_curve = log_likelihood_curve

    @classmethod
    def from_estimator(cls, estimator, *, ax=None):
        """Draw the log-likelihood curve of a fitted estimator.

        Parameters
        ----------
        estimator : fitted MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ConvergenceDisplay
        """
        check_matplotlib_support("ConvergenceDisplay.from_estimator")
        check_is_fitted(estimator)
        return cls(np.asarray(estimator.log_likelihood_curve_)).plot(ax=ax)

    def plot(self, ax=None):
        """Draw the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ConvergenceDisplay
        """
        check_matplotlib_support("ConvergenceDisplay.plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        n = len(self.log_likelihood_curve)
        (self.line_,) = ax.plot(
            np.arange(1, n + 1), self.log_likelihood_curve, marker="o", ms=3
        )
        ax.set_xlabel("EM iteration")
        ax.set_ylabel("training log-likelihood")
        self.ax_, self.figure_ = ax, ax.figure
        return self
