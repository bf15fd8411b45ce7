"""Standard errors of ``coefficient_table`` against flexmix's ``refit()``.

Fits a mixture of linear-Gaussian experts (unpenalised, as flexmix) in
skmoe, hands its responsibilities to flexmix as the start, so that both
reach the same optimum with the same expert labels, and prints each
coefficient's estimate and standard error side by side, with the
log-likelihoods. Data: draws from known 2-expert mixtures (Gaussian and
Poisson), and flexmix's own ``NPreg`` (``yn ~ x + x^2`` Gaussian, ``yp ~ x``
Poisson, the gate on ``x``).

    python benchmarks/flexmix_refit.py

Needs R with flexmix (``apt-get install r-cran-flexmix``).
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
from harness import flexmix_available, fmt_table
from sklearn.linear_model import LinearRegression

from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression

HERE = os.path.dirname(os.path.abspath(__file__))
R_SCRIPT = os.path.join(HERE, "flexmix_refit.R")


def npreg(rscript, path):
    """flexmix's NPreg data set, written by R to ``path``."""
    code = f"library(flexmix); data(NPreg); write.csv(NPreg, '{path}', row.names=FALSE)"
    subprocess.run([rscript, "-e", code], check=True, capture_output=True)
    return pd.read_csv(path)


def poisson_draw(n=600, seed=0):
    """Counts from two log-linear Poisson experts, the gate on x."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = rng.random(n) < 1 / (1 + np.exp(-2 * x))
    y = rng.poisson(np.exp(np.where(z, 1.5 + 0.5 * x, 0.2 - 0.4 * x)))
    return pd.DataFrame({"x": x}), y.astype(float)


def data_sets(rscript, tmp):
    """(name, X, y, gate_features, family)."""
    X, y = make_moe_regression(
        500, n_features=2, n_experts=2, noise=0.4, random_state=0
    )
    yield "draw, n=500", pd.DataFrame(X, columns=["x1", "x2"]), y, None, "gaussian"
    d = npreg(rscript, os.path.join(tmp, "npreg.csv"))
    X = pd.DataFrame({"x": d["x"], "x2": d["x"] ** 2})
    yield "NPreg yn", X, d["yn"].to_numpy(), ["x"], "gaussian"
    X, y = poisson_draw()
    yield "Poisson draw", X, y, None, "poisson"
    yield "NPreg yp", d[["x"]], d["yp"].to_numpy().astype(float), None, "poisson"


def run_flexmix(rscript, path, expert_terms, gate_terms, family):
    proc = subprocess.run(
        [rscript, R_SCRIPT, path, ",".join(expert_terms), ",".join(gate_terms), family],
        capture_output=True,
        text=True,
        check=True,
    )
    loglik, coefs = None, {}
    for line in proc.stdout.splitlines():
        fields = line.split()
        if fields[0] == "LOGLIK":
            loglik = float(fields[1])
        elif fields[0] == "COEF":
            part = fields[1].replace("gate:", "gate: ")
            coefs[(part, fields[2])] = (float(fields[3]), float(fields[4]))
    return loglik, coefs


def main():
    rscript, why = flexmix_available()
    if rscript is None:
        sys.exit(f"flexmix_refit.py needs R's flexmix: {why}.")
    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, X, y, gate_features, family in data_sets(rscript, tmp):
            est = MixtureOfExpertsRegressor(
                LinearRegression() if family == "gaussian" else None,
                family=family,
                n_experts=2,
                gate_alpha=0.0,
                gate_features=gate_features,
                tol=1e-12,
                max_iter=5000,
                n_init=10,
                random_state=0,
            ).fit(X, y)
            table = est.coefficient_table(X, y)
            resp = est.responsibilities(X, y)
            frame = X.assign(y=y, h1=resp[:, 0], h2=resp[:, 1])
            path = os.path.join(tmp, "data.csv")
            frame.to_csv(path, index=False)
            gate_terms = gate_features or list(X.columns)
            loglik, coefs = run_flexmix(
                rscript, path, list(X.columns), gate_terms, family
            )
            rows.append(
                [
                    name,
                    "log-likelihood",
                    f"{est.log_likelihood_:.4f}",
                    f"{loglik:.4f}",
                    "",
                    "",
                    "",
                ]
            )
            for (part, term), (estimate, se) in table[
                ["estimate", "std_error"]
            ].iterrows():
                r_estimate, r_se = coefs[(part, term)]
                ratio = se / r_se
                worst = max(worst, abs(ratio - 1))
                rows.append(
                    [
                        name,
                        f"{part} {term}",
                        f"{estimate:.5f}",
                        f"{r_estimate:.5f}",
                        f"{se:.5f}",
                        f"{r_se:.5f}",
                        f"{ratio:.4f}",
                    ]
                )
    print(
        fmt_table(
            [
                "data",
                "coefficient",
                "skmoe",
                "flexmix",
                "se skmoe",
                "se flexmix",
                "se ratio",
            ],
            rows,
        )
    )
    print(f"\nlargest |se ratio - 1|: {worst:.2e}")


if __name__ == "__main__":
    main()
