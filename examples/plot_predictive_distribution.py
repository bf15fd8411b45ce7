"""
The whole predictive distribution, and choosing the number of experts
=====================================================================

A mixture of experts gives p(y | x), not only a point prediction. Here the
number of experts is chosen by BIC, the 90% predictive interval is checked on
held-out rows, and the gate and the experts are drawn.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor, select_n_experts
from skmoe.datasets import make_moe_regression
from skmoe.inspection import ConvergenceDisplay, ExpertFitDisplay, GateRegionsDisplay

X, y = make_moe_regression(
    n_samples=1500, n_experts=3, noise=[0.2, 0.5, 1.0], random_state=0
)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# Choose n_experts by BIC
best, table = select_n_experts(
    MixtureOfExpertsRegressor(n_init=2, random_state=0),
    X_train,
    y_train,
    n_experts=range(1, 5),
)
print(table.round(1))
print(f"BIC picks {best.n_experts_} experts\n")
print(best.summary().round(3).to_string())

# %%
# Predictive intervals: how often does the 90% interval hold the truth?
q05, q50, q95 = best.predict_quantiles(X_test, [0.05, 0.5, 0.95]).T
coverage = np.mean((y_test > q05) & (y_test < q95))
print(f"\nheld-out coverage of the 90% interval: {coverage:.3f}")
mean, std = best.predict(X_test, return_std=True)
mode = best.predict_mode(X_test)
print("first rows: mean, mode, std, 5%-95%")
for i in range(3):
    print(
        f"  {mean[i]:7.2f} {mode[i]:7.2f} {std[i]:6.2f}  [{q05[i]:.2f}, {q95[i]:.2f}]"
    )

# %%
# Which expert speaks where, each expert's fit, and the EM curve
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
GateRegionsDisplay.from_estimator(best, X_train, ax=axes[0])
ExpertFitDisplay.from_estimator(best, X_train, y_train, feature=0, ax=axes[1])
ConvergenceDisplay.from_estimator(best, ax=axes[2])
fig.tight_layout()
plt.show()
