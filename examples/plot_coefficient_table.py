"""
Coefficients with standard errors, as flexmix's refit
=====================================================

A statistician's first question of a fitted mixture of regressions: which
coefficients are different from zero, and how sure are we?
``coefficient_table`` answers it as R's ``summary(refit(model))`` does in
flexmix: for each expert's coefficients and the gate's (each expert against
the first), the estimate, its standard error from the observed information of
the mixture likelihood, the z value and the p value. Fit without penalties
(``gate_alpha=0``, ``LinearRegression`` experts) to get maximum-likelihood
standard errors; ``benchmarks/flexmix_refit.py`` checks them against flexmix
(they agree to 5e-4).
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from skmoe import MixtureOfExpertsRegressor

# %%
# Two regimes of a dose-response, the gate switching on age
# ----------------------------------------------------------
# Below about 50 years the response rises with the dose, above it stays
# flat; which regime applies depends on age
# alone. The third input, ``noise_col``, matters to neither.
rng = np.random.default_rng(0)
n = 400
X = pd.DataFrame(
    {
        "age": rng.uniform(20, 80, n),
        "dose": rng.uniform(0, 10, n),
        "noise_col": rng.normal(size=n),
    }
)
old = rng.random(n) < 1 / (1 + np.exp(-(X["age"] - 50) / 5))
y = np.where(old, 3.0, 1.0 + 0.8 * X["dose"]) + rng.normal(scale=0.5, size=n)

moe = MixtureOfExpertsRegressor(
    LinearRegression(),
    n_experts=2,
    gate_alpha=0.0,
    n_init=5,
    random_state=0,
).fit(X, y)
table = moe.coefficient_table(X, y)
with pd.option_context("display.width", 100, "display.precision", 3):
    print(table)

# %%
# Which expert takes which regime is arbitrary (EM may put either regime in
# either): read them by their coefficients. The one with a dose coefficient
# near 0.8 is the rising regime, the other's intercept near 3 the flat one.
# In the gate, age is the only clear term; dose matters in one expert only,
# and ``noise_col`` nowhere: its p values are large.
#
# Estimates and 95% intervals
# ---------------------------
# Each coefficient with its interval ``estimate +- 1.96 std_error``; an
# interval that holds zero marks a coefficient the data do not tell from
# zero.
labels = [f"{part} | {term}" for part, term in table.index]
estimate, half = table["estimate"], 1.96 * table["std_error"]
fig, ax = plt.subplots(figsize=(6, 5))
rows = np.arange(len(table))
ax.errorbar(estimate, rows, xerr=half, fmt="o", color="black", capsize=3)
ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
ax.set_yticks(rows, labels)
ax.invert_yaxis()
ax.set_xlabel("estimate with 95% interval")
ax.set_title("Coefficients of the gate and the experts")
fig.tight_layout()

# %%
# The hard assignments and the information criteria
# --------------------------------------------------
# ``clusters`` gives each row's most responsible expert (flexmix's
# ``clusters()``), ``bic``, ``aic`` and ``icl`` the criteria flexmix reports.
counts = np.bincount(moe.clusters(X, y), minlength=2)
print("rows per expert:", dict(zip(moe.expert_names_, counts.tolist(), strict=True)))
print(f"BIC {moe.bic(X, y):.1f}  AIC {moe.aic(X, y):.1f}  ICL {moe.icl(X, y):.1f}")
