"""Standard errors of ``coefficient_table`` against flexmix's ``refit()``.

Fits a mixture of linear-Gaussian experts (unpenalised, as flexmix) in
skmoe, hands its responsibilities to flexmix as the start, so that both
reach the same optimum with the same expert labels, and prints each
coefficient's estimate and standard error side by side, with the
log-likelihoods. Data: a draw from a known 2-expert mixture, and flexmix's
own ``NPreg`` (``yn ~ x + x^2``, the gate on ``x``).

    python benchmarks/flexmix_refit.py

Needs R with flexmix (``apt-get install r-cran-flexmix``).
"""

import os
import subprocess
import sys
import tempfile

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
    d = pd.read_csv(path)
    return pd.DataFrame({"x": d["x"], "x2": d["x"] ** 2}), d["yn"].to_numpy()


def data_sets(rscript, tmp):
    X, y = make_moe_regression(
        500, n_features=2, n_experts=2, noise=0.4, random_state=0
    )
    yield "draw, n=500", pd.DataFrame(X, columns=["x1", "x2"]), y, None
    X, y = npreg(rscript, os.path.join(tmp, "npreg.csv"))
    yield "NPreg", X, y, ["x"]


def run_flexmix(rscript, path, expert_terms, gate_terms):
    proc = subprocess.run(
        [rscript, R_SCRIPT, path, ",".join(expert_terms), ",".join(gate_terms)],
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
        for name, X, y, gate_features in data_sets(rscript, tmp):
            est = MixtureOfExpertsRegressor(
                LinearRegression(),
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
            loglik, coefs = run_flexmix(rscript, path, list(X.columns), gate_terms)
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
