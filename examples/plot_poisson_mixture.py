"""
Counts from two regimes: a Poisson mixture of experts
=====================================================

Counts (say, visits per day) that follow one log-linear law on weekdays-like
inputs and another elsewhere, with a soft switch between them. A mixture of
two Poisson experts (``family="poisson"``, PoissonRegressor experts) recovers
both laws and the switch. It is compared on held-out rows, by mean Poisson
deviance, with one PoissonRegressor (a single log-linear law) and with
histogram gradient boosting on the Poisson loss, and its predictive
distribution of the counts (mean, intervals) is checked.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import mean_poisson_deviance
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor

rng = np.random.RandomState(0)
n = 4000
X = rng.uniform(-2, 2, size=(n, 2))
# the gate: regime 1 takes over as x0 grows
regime = rng.rand(n) < 1 / (1 + np.exp(-3 * X[:, 0]))
log_mean = np.where(
    regime,
    0.5 + 0.8 * X[:, 0] - 0.3 * X[:, 1],  # regime 1: rises with x0
    2.0 - 0.6 * X[:, 0] + 0.4 * X[:, 1],  # regime 0: falls with x0
)
y = rng.poisson(np.exp(log_mean)).astype(float)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# Three models of the mean count
# ------------------------------
# ``family="poisson"`` makes each expert a Poisson law around its mean; with
# no ``estimator`` the experts are unpenalised PoissonRegressors, fitted by
# weighted maximum likelihood at each EM step.
moe = MixtureOfExpertsRegressor(
    family="poisson", n_experts=2, n_init=3, random_state=0
).fit(X_train, y_train)
glm = PoissonRegressor(alpha=0.0, solver="newton-cholesky").fit(X_train, y_train)
hgb = HistGradientBoostingRegressor(loss="poisson", random_state=0).fit(
    X_train, y_train
)

print("held-out mean Poisson deviance (lower is better):")
for name, model in [
    ("mixture of 2 Poisson experts", moe),
    ("one PoissonRegressor", glm),
    ("HistGradientBoosting, Poisson loss", hgb),
]:
    deviance = mean_poisson_deviance(y_test, model.predict(X_test))
    print(f"  {name:36s} {deviance:.4f}")

# %%
# The recovered laws and the switch
# ---------------------------------
# Each expert's coefficients are those of its regime's log-mean (expert
# labels are arbitrary); the gate's slope on x0 says how sharply one law
# takes over from the other (3 in size, its sign set by the labels).
print("\nexperts (intercept, coefficients on x0 and x1):")
for name, expert in zip(moe.expert_names_, moe.experts_, strict=True):
    print(f"  {name}: {expert.intercept_:+.3f}, {np.round(expert.coef_, 3)}")
gate_slope = moe.gate_.coef_[0, 1] - moe.gate_.coef_[0, 0]
print(f"gate: expert1 against expert0, slope on x0 {gate_slope:+.2f}")
print(f"\nBIC on the training rows: {moe.bic(X_train, y_train):.1f}")
held_out = moe.conditional_log_likelihood(X_test, y_test).mean()
print(f"held-out Poisson log-likelihood per row: {held_out:.4f}")
print(moe.summary().round(3).to_string())

# %%
# The predictive distribution of the counts
# -----------------------------------------
# ``predict_quantiles`` gives counts: the smallest count whose mixture CDF
# reaches each level. The 5%-95% interval should hold about 90% of the
# held-out counts (a little more: counts are discrete).
low, high = moe.predict_quantiles(X_test, [0.05, 0.95]).T
inside = np.mean((y_test >= low) & (y_test <= high))
print(f"\nheld-out counts inside the 5%-95% interval: {inside:.3f}")
mean, std = moe.predict(X_test[:3], return_std=True)
print("first rows: mean, std, mode, interval")
modes = moe.predict_mode(X_test[:3])
for i, (m, s, mode) in enumerate(zip(mean, std, modes, strict=True)):
    print(f"  {m:6.2f} {s:6.2f} {mode:4.0f}  [{low[i]:.0f}, {high[i]:.0f}]")

# %%
# The mean counts along x0 (x1 = 0)
# ---------------------------------
grid = np.c_[np.linspace(-2, 2, 200), np.zeros(200)]
comp = moe.predict_components(grid)
fig, ax = plt.subplots(figsize=(7, 4.5))
near = np.abs(X_test[:, 1]) < 0.3
ax.scatter(X_test[near, 0], y_test[near], s=6, alpha=0.4, color="grey", label="y")
ax.plot(grid[:, 0], moe.predict(grid), color="black", lw=2, label="mixture mean")
for k, name in enumerate(moe.expert_names_):
    ax.plot(grid[:, 0], comp.mean[:, k], ls="--", label=f"{name} mean")
ax.plot(grid[:, 0], glm.predict(grid), ls=":", label="one PoissonRegressor")
ax.plot(grid[:, 0], hgb.predict(grid), ls="-.", label="HistGradientBoosting")
ax.set_xlabel("x0")
ax.set_ylabel("count")
ax.set_ylim(0, np.percentile(y_test[near], 99))
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
