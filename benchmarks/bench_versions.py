"""Two versions of skmoe side by side: the same fits, alternating, one run.

Speed on a shared machine drifts by tens of percent within minutes, so a
change is judged by fits of both versions made in the same run, one after the
other, each in a fresh process (numba's cache loaded and a tiny fit made
before the clock starts; below 1e5 rows, the best of seven fits). Give each
version as a source tree, e.g. a git worktree of an older commit::

    git worktree add /tmp/skmoe-old <commit>
    OMP_NUM_THREADS=1 python benchmarks/bench_versions.py /tmp/skmoe-old .

For each size it prints the full fit (to ``tol=1e-6``) and, with ``tol=0``,
fits of ``--iters`` EM iterations: the difference of the longest and the
shortest of those, per iteration, is the steady-state time of one EM
iteration, without the start (k-means, the gate's first fit).

``--paired R`` instead makes R full fits of each version in one process,
alternating old and new (the old tree's package is copied under another
name, so both import side by side), and prints the medians and the median of
the R paired ratios: drift then hits both versions alike. Fits of 0.1 s need
it to tell a 5% change from noise here::

    OMP_NUM_THREADS=1 python benchmarks/bench_versions.py /tmp/skmoe-old . \
        --sizes 1e4,5,3 --paired 41
"""

import argparse
import json
import os
import subprocess
import sys

_CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[2])  # ahead of the working directory and installs
import skmoe
from skmoe import MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_regression
n, d, K, max_iter, repeats = json.loads(sys.argv[1])
X, y = make_moe_regression(n_samples=2000, n_features=d, n_experts=K, noise=0.3,
                           random_state=0)
MixtureOfExpertsRegressor(n_experts=K, random_state=0, max_iter=3).fit(X, y)
X, y = make_moe_regression(n_samples=n, n_features=d, n_experts=K, noise=0.3,
                           random_state=0)
model = MixtureOfExpertsRegressor(n_experts=K, random_state=0,
                                  tol=1e-6 if max_iter == 0 else 0.0,
                                  max_iter=max_iter or 500)
seconds = float("inf")
for _ in range(repeats):  # the best of a few: small fits are noisy
    t0 = time.perf_counter()
    model.fit(X, y)
    seconds = min(seconds, time.perf_counter() - t0)
print(json.dumps({"s": seconds, "n_iter": int(model.n_iter_),
                  "ll": float(model.log_likelihood_), "file": skmoe.__file__}))
"""


def fit(tree, n, d, K, max_iter):
    """One fit with the skmoe found in ``tree``, in its own process."""
    tree = os.path.abspath(tree)
    result = _run_child(
        _CHILD, json.dumps([n, d, K, max_iter, 1 if n >= 100_000 else 7]), tree
    )
    _check_imported(result["file"], tree)
    return result


def _run_child(code, *args):
    """Run ``code`` in a fresh Python with ``args``; its last line, as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check_imported(file, tree):
    """Raise unless ``file`` is the tree's skmoe, not an installed one."""
    expected = os.path.join(tree, "skmoe", "__init__.py")
    if os.path.realpath(file) != os.path.realpath(expected):
        raise RuntimeError(f"{tree}: imported {file} instead")


_PAIRED_CHILD = """
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
old_parent, new_tree = sys.argv[2], sys.argv[3]
sys.path.insert(0, new_tree)
sys.path.insert(0, old_parent)
import skmoe, skmoe_old_version
from skmoe.datasets import make_moe_regression
n, d, K, repeats = json.loads(sys.argv[1])
versions = {"old": skmoe_old_version, "new": skmoe}
X, y = make_moe_regression(n_samples=n, n_features=d, n_experts=K, noise=0.3,
                           random_state=0)
for module in versions.values():  # numba's cache loaded, a first fit made
    module.MixtureOfExpertsRegressor(n_experts=K, random_state=0, tol=1e-6).fit(
        X[:2000], y[:2000])
times = {v: [] for v in versions}
fitted = {}
for r in range(repeats):
    order = ("old", "new") if r % 2 == 0 else ("new", "old")
    for v in order:
        model = versions[v].MixtureOfExpertsRegressor(n_experts=K, random_state=0,
                                                      tol=1e-6)
        t0 = time.perf_counter()
        model.fit(X, y)
        times[v].append(time.perf_counter() - t0)
        fitted[v] = model
ratios = [a / b for a, b in zip(times["old"], times["new"])]
print(json.dumps({
    "median": {v: statistics.median(t) for v, t in times.items()},
    "ratio": statistics.median(ratios),
    "n_iter": {v: int(m.n_iter_) for v, m in fitted.items()},
    "ll": {v: float(m.log_likelihood_) for v, m in fitted.items()},
    "file": {"old": skmoe_old_version.__file__, "new": skmoe.__file__},
}))
"""


def paired(old_tree, new_tree, n, d, K, repeats):
    """Full fits of both versions alternating in one process (medians)."""
    import shutil
    import tempfile

    new_tree = os.path.abspath(new_tree)
    with tempfile.TemporaryDirectory() as parent:
        # the old package under another name; its imports are relative
        shutil.copytree(
            os.path.join(old_tree, "skmoe"),
            os.path.join(parent, "skmoe_old_version"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        result = _run_child(
            _PAIRED_CHILD, json.dumps([n, d, K, repeats]), parent, new_tree
        )
    _check_imported(result["file"]["new"], new_tree)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", help="source tree of the first version")
    p.add_argument("new", help="source tree of the second version")
    p.add_argument(
        "--sizes",
        nargs="+",
        default=["1e4,5,3", "1e6,20,8"],
        help="n,d,K triples (default: 1e4,5,3 1e6,20,8)",
    )
    p.add_argument(
        "--iters",
        type=int,
        nargs=2,
        default=[5, 15],
        help="EM iterations of the two tol=0 fits (default 5 15)",
    )
    p.add_argument(
        "--paired",
        type=int,
        metavar="R",
        help="R alternating full fits of each version in one process (medians)",
    )
    args = p.parse_args(argv)
    header = (
        f"{'n':>4} {'d':>3} {'K':>2}  {'what':<24} {'old':>10} {'new':>10} "
        f"{'old/new':>8}  notes"
    )
    print(f"old: {args.old}\nnew: {args.new}\n{header}\n{'-' * len(header)}")
    for size in args.sizes:
        n, d, K = (float(v) for v in size.split(","))
        n, d, K = int(n), int(d), int(K)
        label = f"{n:>4.0e} {d:>3} {K:>2}".replace("e+0", "e")
        if args.paired:
            res = paired(args.old, args.new, n, d, K, args.paired)
            med, it, ll = res["median"], res["n_iter"], res["ll"]
            print(
                f"{label}  {'full fit, median (s)':<24} {med['old']:>10.4f} "
                f"{med['new']:>10.4f} {res['ratio']:>7.3f}x  median of "
                f"{args.paired} paired ratios; iterations {it['old']}/{it['new']}, "
                f"log-likelihood {ll['old']:.4f}/{ll['new']:.4f}",
                flush=True,
            )
            continue
        short, long_ = args.iters
        runs = {}
        for max_iter in (0, short, long_):
            for version, tree in (("old", args.old), ("new", args.new)):
                runs[version, max_iter] = fit(tree, n, d, K, max_iter)
        old, new = runs["old", 0], runs["new", 0]
        print(
            f"{label}  {'full fit (s)':<24} {old['s']:>10.3f} {new['s']:>10.3f} "
            f"{old['s'] / new['s']:>7.2f}x  iterations {old['n_iter']}/"
            f"{new['n_iter']}, log-likelihood {old['ll']:.4f}/{new['ll']:.4f}"
        )
        steady = {
            v: (runs[v, long_]["s"] - runs[v, short]["s"]) / (long_ - short)
            for v in ("old", "new")
        }
        print(
            f"{label}  {'EM iteration (s)':<24} {steady['old']:>10.4f} "
            f"{steady['new']:>10.4f} {steady['old'] / steady['new']:>7.2f}x  "
            f"(fits of {long_} minus {short} iterations)"
        )
        start = {v: runs[v, short]["s"] - short * steady[v] for v in ("old", "new")}
        print(
            f"{label}  {'start (s)':<24} {start['old']:>10.3f} {start['new']:>10.3f} "
            f"{start['old'] / start['new']:>7.2f}x  (k-means, first gate fit, "
            "set-up)",
            flush=True,
        )


if __name__ == "__main__":
    main()
