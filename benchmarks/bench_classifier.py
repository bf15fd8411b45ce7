"""The classifier against the ensembles, and its EM iteration against the regressor's.

Each fit runs in its own process with the skmoe found in ``--tree`` (default:
this checkout), numba's cache loaded and a tiny fit made before the clock
starts. Give ``--tree`` several times to put versions side by side::

    git worktree add /tmp/skmoe-old <commit>
    python benchmarks/bench_classifier.py --tree /tmp/skmoe-old --tree .

The first table fits ``MixtureOfExpertsClassifier(n_experts=3)`` on
``make_moe_classification(n, n_features=10, n_experts=3)`` beside
HistGradientBoostingClassifier and LogisticRegression (same data, same run)
and prints times, EM iterations and the log-likelihood per row. The second
times one EM iteration of the classifier and of the regressor at
``--iter-size`` (rows, features, experts; 3 classes): the median time
between successive iterations of a 12-iteration fit with ``tol=0``, from the
third iteration on.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import fmt_table, load_average, machine_info  # noqa: E402

_CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[2])
import numpy as np
import skmoe
from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression
spec = json.loads(sys.argv[1])
kind, n, d, K = spec["kind"], spec["n"], spec["d"], spec["K"]

def data(n):
    if kind == "regressor":
        return make_moe_regression(n_samples=n, n_features=d, n_experts=K,
                                   noise=0.3, random_state=0)
    return make_moe_classification(n_samples=n, n_features=d, n_experts=K,
                                   n_classes=spec.get("classes", 2), random_state=0)

def model(**kw):
    cls = (MixtureOfExpertsRegressor if kind == "regressor"
           else MixtureOfExpertsClassifier)
    return cls(n_experts=K, random_state=0, **kw)

X, y = data(30000)  # serial and parallel kernels
model(max_iter=3).fit(X, y)  # numba's cache loaded, BLAS started
X, y = data(n)
if spec["what"] == "fit":
    t0 = time.perf_counter()
    m = model().fit(X, y)
    s = time.perf_counter() - t0
    out = {"s": s, "n_iter": int(m.n_iter_), "ll": float(m.log_likelihood_) / n}
elif spec["what"] == "iteration":
    # the time between the loop's records of successive iterations, from
    # the third on: the start and the first two M-steps (cold, then warm
    # without a pass's sums) left out
    import skmoe._em._loop as loop
    stamps, record = [], loop.record_iteration
    def timed(*args, **kwargs):
        stamps.append(time.perf_counter())
        return record(*args, **kwargs)
    loop.record_iteration = timed
    model(max_iter=12, tol=0.0).fit(X, y)
    out = {"s": float(np.median(np.diff(stamps)[2:]))}
else:  # the ensembles, on the same data
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    est = (HistGradientBoostingClassifier(random_state=0) if spec["what"] == "hgb"
           else LogisticRegression(max_iter=1000))
    t0 = time.perf_counter()
    est.fit(X, y)
    out = {"s": time.perf_counter() - t0}
out["file"] = skmoe.__file__
print("RESULT " + json.dumps(out))
"""


def run(tree, spec):
    """``spec`` measured in a fresh process with the skmoe of ``tree``."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(spec), os.path.abspath(tree)],
        capture_output=True,
        text=True,
    )
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{tree} {spec}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", help="a source tree (repeatable)")
    parser.add_argument("--sizes", default="1e4,1e5", help="rows of the first table")
    parser.add_argument(
        "--iter-size", default="1e6,20,8", help="rows,features,experts; '' to skip"
    )
    args = parser.parse_args()
    trees = args.tree or [os.path.dirname(HERE)]
    info = machine_info()
    print(", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"load average {load_average()}")

    rows = []
    for n in (int(float(s)) for s in args.sizes.split(",")):
        base = {"kind": "classifier", "n": n, "d": 10, "K": 3}
        hgb = run(trees[0], {**base, "what": "hgb"})["s"]
        lr = run(trees[0], {**base, "what": "lr"})["s"]
        for tree in trees:
            r = run(tree, {**base, "what": "fit"})
            rows.append(
                [
                    f"{n:,}",
                    tree,
                    f"{r['s']:.2f}",
                    r["n_iter"],
                    f"{r['ll']:.5f}",
                    f"{hgb:.2f}",
                    f"{lr:.3f}",
                    f"{r['s'] / hgb:.1f}x",
                ]
            )
    print(
        "\nMixtureOfExpertsClassifier(n_experts=3), make_moe_classification, "
        "10 features, 3 experts"
    )
    print(
        fmt_table(
            [
                "rows",
                "skmoe tree",
                "fit s",
                "EM iters",
                "LL / row",
                "HGB s",
                "LR s",
                "skmoe / HGB",
            ],
            rows,
        )
    )

    if args.iter_size:
        n, d, K = (int(float(s)) for s in args.iter_size.split(","))
        rows = []
        for tree in trees:
            base = {"n": n, "d": d, "K": K, "what": "iteration"}
            reg = run(tree, {**base, "kind": "regressor"})["s"]
            clf = run(tree, {**base, "kind": "classifier", "classes": 3})["s"]
            rows.append([tree, f"{reg:.3f}", f"{clf:.3f}", f"{clf / reg:.2f}"])
        print(
            f"\nOne EM iteration at {n:,} rows, {d} features, {K} experts "
            "(classifier: 3 classes), seconds"
        )
        print(fmt_table(["skmoe tree", "regressor", "classifier", "ratio"], rows))


if __name__ == "__main__":
    main()
