"""
Quickstart: a mixture of experts on piecewise-linear data
==========================================================

Data drawn from three linear experts, each in charge of its own region of the
inputs. A mixture of experts recovers the experts and the regions: the gate
tells which expert speaks where, and the likelihood tells how well the whole
conditional density fits.
"""

import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression

X, y, truth = make_moe_regression(
    n_samples=3000,
    n_features=2,
    n_experts=3,
    noise=0.2,
    return_params=True,
    random_state=0,
)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# Fit a mixture of three linear experts, and one linear model for comparison
# ---------------------------------------------------------------------------
# ``n_init=3`` runs EM from three starting points and keeps the best.
moe = MixtureOfExpertsRegressor(n_experts=3, n_init=3, random_state=0)
moe.fit(X_train, y_train)
single = LinearRegression().fit(X_train, y_train)

print(f"EM iterations: {moe.n_iter_}, converged: {moe.converged_}")
print(
    f"held-out R^2: mixture of experts {moe.score(X_test, y_test):.3f}, "
    f"one linear model {single.score(X_test, y_test):.3f}"
)
held_out = moe.conditional_log_likelihood(X_test, y_test)
print(f"held-out log-likelihood per row: {held_out.mean():.3f}")

# %%
# The recovered experts
# ---------------------
# The fitted experts come in an arbitrary order; compare each with its true
# counterpart by coefficients.
print("\nfitted experts (coef, intercept, noise std):")
for name, expert, var in zip(
    moe.expert_names_, moe.experts_, moe.noise_variance_, strict=True
):
    print(
        f"  {name}: {np.round(expert.coef_, 2)}, {expert.intercept_:.2f}, "
        f"{np.sqrt(var):.3f}"
    )
print("true experts:")
for coef, intercept, noise in zip(
    truth.coef, truth.intercept, truth.noise, strict=True
):
    print(f"  {np.round(coef, 2)}, {intercept:.2f}, {noise:.3f}")

# %%
# Gate and predictive spread
# --------------------------
# Which expert handles each of a few points, and how the prediction spreads.
gate = moe.predict_gate(X_test[:5])
mean, std = moe.predict(X_test[:5], return_std=True)
print("\ngate weights of five test rows:\n", np.round(gate, 3))
print("predictive mean +- std:", np.round(mean, 2), np.round(std, 2))
