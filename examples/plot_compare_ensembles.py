"""
Mixture of experts against bagging, boosting and stacking
=========================================================

:func:`skmoe.compare` cross-validates skmoe's mixtures (linear experts and,
for regression, ridge experts on spline features, each with the number of
experts chosen by BIC; three depth-3 tree experts) against bagging, random
forest, gradient boosting, histogram gradient boosting and stacking, on the
same folds, and returns a table of scores and times.
``python -m skmoe compare`` is the same from the command line (see
``python -m skmoe compare --help``).

Two data sets: one drawn from a mixture of linear experts, where the regimes
are the whole story, and the bundled diabetes data, where they are not.
"""

import matplotlib.pyplot as plt

from skmoe import compare

# %%
# Data from a mixture of three linear experts
# -------------------------------------------
# 2000 rows, four features; three folds to keep the example quick. The
# mixture of linear experts has the model's own shape (BIC finds the three
# experts on every fold) and is far ahead; the mixture of depth-3 trees is
# not, since a few axis-aligned steps per region fit linear pieces poorly.
regimes = compare("moe_regression", cv=3, progress=False)
print(regimes.round(4).to_string())

# %%
# The diabetes data
# -----------------
# 442 patients, ten features. Here BIC keeps a single linear expert on every
# fold: ``MoE-linear`` is then a linear regression, level with stacking a
# ridge regression with a tree, and ahead of the tree ensembles. The data
# show no regimes a mixture could use.
diabetes = compare("diabetes", cv=3, progress=False)
print(diabetes.round(4).to_string())

# %%
# Scores side by side
# -------------------
# Mean R^2 over the folds, with one standard deviation. Pass ``models=`` a
# list of names to run a subset, or a dict of your own estimators.
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharex=True)
for ax, (name, table) in zip(
    axes, [("moe_regression", regimes), ("diabetes", diabetes)], strict=True
):
    table = table.sort_values("mean_test_score")
    ax.barh(table.index, table["mean_test_score"], xerr=table["std_test_score"])
    ax.set_title(
        f"{name}: {table.attrs['metric']} over {table.attrs['n_splits']} folds"
    )
    ax.set_xlim(0, 1)
fig.tight_layout()
plt.show()
