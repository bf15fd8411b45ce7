"""
Piecewise data: where a mixture of experts beats boosting
=========================================================

Boosted trees approximate any function with axis-aligned steps. When the data
come from a few regimes, each linear in the inputs, a mixture of linear experts
has exactly the right shape: the gate learns where each regime holds and each
expert learns its line. It then needs far fewer samples than boosting to reach
the same accuracy, and it extrapolates each regime's trend instead of holding
the last step flat.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import softmax
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_score

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression

# %%
# One input, three regimes
# ------------------------
# A target that switches from one line to another at x = -1 and x = 1, with a
# jump at the second switch.
rng = np.random.default_rng(0)


def regimes(x):
    return np.select([x < -1, x < 1], [-2 * x - 3, 0.5 * x], 3 * x - 4)


x = rng.uniform(-3, 3, 150)
y = regimes(x) + 0.3 * rng.standard_normal(x.size)
X = x[:, None]

models = {
    "mixture of 3 linear experts": MixtureOfExpertsRegressor(
        n_experts=3, n_init=3, random_state=0
    ),
    "gradient boosting": GradientBoostingRegressor(random_state=0),
    "histogram gradient boosting": HistGradientBoostingRegressor(random_state=0),
    "one linear model": LinearRegression(),
}
cv = KFold(5, shuffle=True, random_state=0)
print("5-fold CV R^2 on 150 samples:")
for name, model in models.items():
    scores = cross_val_score(model, X, y, cv=cv)
    print(f"  {name:28s} {scores.mean():.3f} +- {scores.std():.3f}")
# the best any model can do: the true regimes, off only by the noise
print(f"  {'the true function':28s} {r2_score(y, regimes(x)):.3f}")

# %%
# The fits, and beyond the training range
# ---------------------------------------
# Outside [-3, 3] the trees repeat their last value; the experts continue
# their lines.
grid = np.linspace(-4, 4, 400)[:, None]
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.scatter(x, y, s=6, c="0.6", label="training data")
ax.plot(grid[:, 0], regimes(grid[:, 0]), "k--", lw=1, label="truth")
for name in ["mixture of 3 linear experts", "gradient boosting"]:
    ax.plot(grid[:, 0], models[name].fit(X, y).predict(grid), lw=2, label=name)
ax.axvspan(-4, -3, color="0.9")
ax.axvspan(3, 4, color="0.9")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend()
fig.tight_layout()

# %%
# How many samples each model needs
# ---------------------------------
# Data from a mixture of three linear experts over four inputs; models trained
# on more and more rows, scored on the same 2000 held-out rows.
X, y, truth = make_moe_regression(
    n_samples=4000,
    n_features=4,
    n_experts=3,
    noise=0.3,
    return_params=True,
    random_state=1,
)
X_test, y_test = X[2000:], y[2000:]
# the true conditional mean E[y | x] = sum_k g_k(x) f_k(x) sets the ceiling:
# the gate is soft, so even the true model cannot tell every row's regime
true_gate = softmax(X_test @ truth.gate_coef + truth.gate_intercept, axis=1)
true_mean = np.sum(true_gate * (X_test @ truth.coef.T + truth.intercept), axis=1)
ceiling = r2_score(y_test, true_mean)
sizes = [100, 300, 1000, 2000]
curves = {name: [] for name in models}
for n in sizes:
    for name, model in models.items():
        curves[name].append(model.fit(X[:n], y[:n]).score(X_test, y_test))

print("held-out R^2 by training size:")
print(" " * 30 + "".join(f"{n:>8d}" for n in sizes))
for name, scores in curves.items():
    print(f"  {name:28s}" + "".join(f"{s:8.3f}" for s in scores))
print(f"  {'the true conditional mean':28s}{ceiling:8.3f}")

fig, ax = plt.subplots(figsize=(7, 4.5))
for name, scores in curves.items():
    ax.plot(sizes, scores, "o-", label=name)
ax.axhline(ceiling, color="k", ls="--", lw=1, label="true conditional mean")
ax.set_xscale("log")
ax.set_xlabel("training samples")
ax.set_ylabel("held-out R^2")
ax.legend()
fig.tight_layout()
plt.show()
