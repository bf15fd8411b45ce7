"""Reliability sweep: cases a careful user could try, and how many go wrong.

Run from the repository root (a few minutes on two cores)::

    python benchmarks/sweep_reliability.py            # the skmoe on the path
    python benchmarks/sweep_reliability.py --tree /tmp/skmoe-old

Each case fits one configuration of the regressor or the classifier (EM, CEM,
SEM, gradient training by L-BFGS and Adam, the MLP and hierarchical gates,
tree, GaussianNB and logistic experts, gate_features, a load-balancing
penalty) on small data drawn from a known mixture, changed in one way, and
checks what a fit must do:

- ``rescale X`` / ``rescale y``: X or y multiplied by 2^k, k in -500..500
  (exact in floating point), for the configurations whose experts are free
  of units (not trees, not penalised LogisticRegression): a clear ValueError
  exactly where the data leave the safe range, else the unscaled fit up to
  the scale (1e-6; the MLP gate, whose non-convex fit turns the last bits a
  rescaled y leaves in the responsibilities into another optimum, and
  GaussianNB under it: finite outputs only);
- ``magnitude X`` / ``magnitude y``: X or y multiplied by 10^k, k in
  -150..150, every configuration: a clear ValueError, or finite outputs;
- ``outlier X`` / ``outlier y``: one cell set to 10^k, k in 10..300: a clear
  ValueError, or finite predictions and probabilities summing to 1, and
  ``converged_`` False where the log-likelihood is not finite;
- ``predict far``: predictions at |x| = 10^k, k in 10..308: finite or a
  clear ValueError;
- ``failed refit``: a fitted model refitted on data that must fail (two
  rows, one class, more columns, NaN): the error is clear and the model
  answers as before;
- ``bad batch``: ``partial_fit`` with one batch holding 1e200, then a good
  batch: a clear error, the model as before, the next batch fits;
- ``adam step``: Adam with learning_rate_init from 0.1 to 1e4: finite, and
  never ``converged_=True`` on a fit worse than one EM step from its start;
- ``bad parameter``: a class instead of an instance, ``n_jobs=0``,
  ``n_experts=True``, a date-time or time-delta column, warm starts with
  other classes or outputs: a ValueError or TypeError, no other exception.

A case fails when it raises anything but a ValueError or TypeError, returns
NaN or inf, reports ``converged_=True`` on non-finite results, changes a
model a failed fit should have left, or breaks the equivariance. The table
gives, per kind, the configurations, the cases tried and the failures.
"""

import argparse
import copy
import pickle
import sys
import time
import warnings
from collections import defaultdict


def configurations(R, C, experts):
    DecisionTreeRegressor, DecisionTreeClassifier, GaussianNB = experts
    reg = {
        "em": dict(),
        "cem": dict(training="cem"),
        "sem": dict(training="sem", max_iter=40),
        "gradient": dict(training="gradient", max_iter=100),
        "adam": dict(training="gradient", gradient_solver="adam", max_iter=30),
        "mlp": dict(gate="mlp", gate_hidden_layer_sizes=(4,), max_iter=40),
        "hierarchical": dict(gate="hierarchical", n_experts=4, max_iter=40),
        "trees": dict(estimator=DecisionTreeRegressor(max_depth=3), max_iter=20),
        "gate_features": dict(gate_features=[0]),
        "load_balance": dict(gate_load_balance=0.1),
    }
    clf = {
        "em": dict(max_iter=30),
        "gradient": dict(training="gradient", max_iter=60),
        "mlp": dict(gate="mlp", gate_hidden_layer_sizes=(4,), max_iter=20),
        "hierarchical": dict(gate="hierarchical", n_experts=4, max_iter=20),
        "trees": dict(estimator=DecisionTreeClassifier(max_depth=3), max_iter=15),
        "nb": dict(estimator=GaussianNB(), max_iter=30),
        "nb mlp": dict(
            estimator=GaussianNB(), gate="mlp", gate_hidden_layer_sizes=(4,)
        ),
        "nb hierarchical": dict(
            estimator=GaussianNB(), gate="hierarchical", n_experts=4, max_iter=20
        ),
    }
    out = []
    for name, kw in reg.items():
        out.append(("regressor " + name, R, dict(n_experts=2, random_state=0) | kw))
    for name, kw in clf.items():
        out.append(("classifier " + name, C, dict(n_experts=2, random_state=0) | kw))
    return out


# configurations whose experts depend on the units (sklearn's trees do not
# split features closer than 1e-7, LogisticRegression penalises raw
# coefficients): rescaling is checked for finiteness only
UNITS_MATTER = {
    "regressor trees",
    "classifier em",
    "classifier gradient",
    "classifier mlp",
    "classifier hierarchical",
    "classifier trees",
}
# equivariant in exact arithmetic, but non-convex: the last bits of a
# rescaled y (or of GaussianNB's log-densities) lead to another optimum
ROUND_OFF_CHAOS = {("regressor mlp", "y"), ("classifier nb mlp", "X")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", help="source tree of the skmoe to test (default: import)")
    p.add_argument(
        "--all-failures", action="store_true", help="list every failing case"
    )
    args = p.parse_args(argv)
    if args.tree:
        sys.path.insert(0, args.tree)
    import numpy as np
    import pandas as pd
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    import skmoe
    from skmoe import MixtureOfExpertsClassifier as C
    from skmoe import MixtureOfExpertsRegressor as R
    from skmoe.datasets import make_moe_classification, make_moe_regression

    print(f"skmoe from {skmoe.__file__}")
    warnings.simplefilter("ignore")
    Xr, yr = make_moe_regression(
        n_samples=120, n_features=2, n_experts=2, random_state=0
    )
    Xc, yc = make_moe_classification(n_samples=120, n_features=2, random_state=0)
    configs = configurations(
        R, C, (DecisionTreeRegressor, DecisionTreeClassifier, GaussianNB)
    )
    largest, smallest_spread = (
        1e-4 * np.sqrt(np.finfo(float).max),
        1e7 * np.sqrt(np.finfo(float).tiny),
    )

    def leaves_range(A):
        A = np.asarray(A, dtype=float).reshape(len(A), -1)
        low, high = A.min(axis=0), A.max(axis=0)
        top = np.maximum(np.abs(low), np.abs(high))
        width = high - low
        return bool(
            np.any(top > largest) or np.any((width > 0) & (width < smallest_spread))
        )

    tried = defaultdict(int)
    failed = defaultdict(int)
    config_names = defaultdict(set)
    examples = defaultdict(list)

    def is_clear(exc):
        return isinstance(exc, (ValueError, TypeError)) and len(str(exc)) > 10

    def answers(est, X):
        out = {"predict": np.asarray(est.predict(X), dtype=float)}
        if hasattr(est, "predict_proba"):
            out["proba"] = est.predict_proba(X)
        else:
            out["std"] = est.predict(X, return_std=True)[1]
        return out

    def finite(out):
        return all(np.all(np.isfinite(v)) for v in out.values())

    def record(kind, config, ok, detail=""):
        tried[kind] += 1
        config_names[kind].add(config)
        if not ok:
            failed[kind] += 1
            if args.all_failures or len(examples[kind]) < 3:
                examples[kind].append(f"{config}: {detail}")

    def fit(Est, kw, X, y, **fit_kw):
        return Est(**kw).fit(X, y, **fit_kw)

    def fitted_ok(est):
        ll = est.log_likelihood_
        return not (est.converged_ and not np.isfinite(ll))

    start = time.perf_counter()
    for name, Est, kw in configs:
        clf = Est is C
        X0, y0 = (Xc, yc) if clf else (Xr, yr)
        try:
            base = fit(Est, kw, X0, y0)
            base_out = answers(base, X0)
        except Exception as exc:  # the unchanged data must fit
            record("baseline", name, False, repr(exc))
            continue
        record("baseline", name, finite(base_out), "non-finite")
        # -- rescale X and y by powers of two: the same fit, up to the scale
        for target in ("X", "y") if not clf else ("X",):
            if name in UNITS_MATTER:
                break
            for k in range(-500, 501, 25):
                c = 2.0**k
                X, y = (c * X0, y0) if target == "X" else (X0, c * y0)
                kind = f"rescale {target}"
                leaves = leaves_range(X) or (not clf and leaves_range(y))
                try:
                    est = fit(Est, kw, X, y)
                    out = answers(est, X)
                except Exception as exc:
                    record(kind, name, is_clear(exc) and leaves, repr(exc))
                    continue
                ok = finite(out) and fitted_ok(est) and not leaves
                if not ok or (name, target) in ROUND_OFF_CHAOS:
                    pass
                elif "proba" in out:
                    ok = np.allclose(out["proba"], base_out["proba"], atol=1e-6)
                else:
                    yc_ = c if target == "y" else 1.0
                    scale = yc_ * (1 + np.abs(base_out["predict"]).max())
                    ok = np.allclose(
                        out["predict"],
                        yc_ * base_out["predict"],
                        rtol=1e-6,
                        atol=1e-6 * scale,
                    )
                record(kind, name, ok, f"k={k}")
        # -- any magnitude: finite, or a clear error
        for target in ("X", "y") if not clf else ("X",):
            for k in range(-150, 151, 10):
                c = 10.0**k
                X, y = (c * X0, y0) if target == "X" else (X0, c * y0)
                kind = f"magnitude {target}"
                try:
                    est = fit(Est, kw, X, y)
                    out = answers(est, X)
                except Exception as exc:
                    record(kind, name, is_clear(exc), repr(exc))
                    continue
                record(kind, name, finite(out) and fitted_ok(est), f"k={k}")
        # -- outliers
        for target in ("X", "y") if not clf else ("X",):
            for k in range(10, 301, 10):
                X, y = X0.copy(), np.array(y0, dtype=float if not clf else None)
                if target == "X":
                    X[5, 0] = 10.0**k
                else:
                    y[5] = 10.0**k
                kind = f"outlier {target}"
                try:
                    est = fit(Est, kw, X, y)
                    out = answers(est, X)
                except Exception as exc:
                    record(kind, name, is_clear(exc), repr(exc))
                    continue
                ok = finite(out) and fitted_ok(est)
                if ok and "proba" in out:
                    ok = np.allclose(out["proba"].sum(axis=1), 1.0)
                record(kind, name, ok, f"k={k}")
        # -- predictions far away
        for k in list(range(10, 301, 10)) + [308]:
            far = np.sign(X0[:3] + 0.01) * 10.0**k
            try:
                out = answers(base, far)
            except Exception as exc:
                record("predict far", name, is_clear(exc), repr(exc))
                continue
            ok = finite(out)
            if ok and "proba" in out:
                ok = np.allclose(out["proba"].sum(axis=1), 1.0)
            record("predict far", name, ok, f"k={k}")
        # -- failed refits leave the model
        bads = [
            (X0[:1], np.asarray(y0)[:1]),
            (np.column_stack([X0, X0[:, :1]]), np.full(len(y0), np.nan)),
            (np.where(np.arange(len(y0))[:, None] == 3, np.nan, X0), y0),
        ]
        if clf:
            bads.append((X0, np.full(len(y0), y0[0])))
        for Xb, yb in bads:
            est = copy.deepcopy(base)
            before = pickle.dumps(
                {k: v for k, v in vars(est).items() if k.endswith("_")}
            )
            try:
                est.fit(Xb, yb)
                record("failed refit", name, False, "did not raise")
                continue
            except Exception as exc:
                ok = is_clear(exc)
            after = pickle.dumps(
                {k: v for k, v in vars(est).items() if k.endswith("_")}
            )
            try:
                same = after == before and all(
                    np.array_equal(a, b)
                    for a, b in zip(
                        answers(est, X0).values(), base_out.values(), strict=True
                    )
                )
            except Exception:
                same = False
            record("failed refit", name, ok and same, "changed the model")
        # -- a bad batch of partial_fit
        if hasattr(Est(**kw), "partial_fit"):
            est = Est(**kw)
            extra = {"classes": np.unique(y0)} if clf else {}
            try:
                est.partial_fit(X0[:60], np.asarray(y0)[:60], **extra)
                before = answers(est, X0)
                bad = X0[60:].copy()
                bad[0, 0] = 1e200
                try:
                    est.partial_fit(bad, np.asarray(y0)[60:])
                    ok = finite(answers(est, X0))
                except Exception as exc:
                    ok = is_clear(exc) and all(
                        np.array_equal(a, b)
                        for a, b in zip(
                            answers(est, X0).values(), before.values(), strict=True
                        )
                    )
                est.partial_fit(X0[60:], np.asarray(y0)[60:])
                ok = ok and finite(answers(est, X0))
            except Exception:
                ok = False
            record("bad batch", name, ok, "" if ok else "broke")
        # -- bad parameters and inputs
        Expert = DecisionTreeClassifier if clf else DecisionTreeRegressor
        bad_params = [
            dict(estimator=Expert),
            dict(n_jobs=0),
            dict(n_experts=True),
        ]
        for extra in bad_params:
            try:
                fit(Est, kw | extra, X0, y0)
                record("bad parameter", name, False, f"{extra} accepted")
            except Exception as exc:
                record("bad parameter", name, is_clear(exc), repr(exc))
        frame = pd.DataFrame(
            {"a": X0[:, 0], "t": pd.date_range("2020", periods=len(X0))}
        )
        try:
            fit(Est, kw, frame, y0)
            record("bad parameter", name, False, "date-time column accepted")
        except Exception as exc:
            record("bad parameter", name, is_clear(exc), repr(exc))
        if not clf:
            frame["t"] = frame["t"] - frame["t"].iloc[0]
            try:
                fit(Est, kw, frame, y0)
                record("bad parameter", name, False, "time-delta column accepted")
            except Exception as exc:
                record("bad parameter", name, is_clear(exc), repr(exc))
        # -- Adam with too large a step: never a diverged fit called converged
        if kw.get("gradient_solver") == "adam":
            one_step = fit(Est, kw | dict(training="em", max_iter=1), X0, y0)
            for rate in (0.1, 1.0, 10.0, 100.0, 1e3, 1e4):
                try:
                    est = fit(Est, kw | dict(learning_rate_init=rate), X0, y0)
                    out = answers(est, X0)
                except Exception as exc:
                    record("adam step", name, is_clear(exc), repr(exc))
                    continue
                worse = est.score(X0, y0) < one_step.score(X0, y0) - 0.05
                ok = finite(out) and not (est.converged_ and worse)
                record("adam step", name, ok, f"learning_rate_init={rate}")
        warm = copy.deepcopy(base).set_params(warm_start=True)
        other = (np.asarray(y0) + 1) if clf else np.column_stack([y0, y0])
        try:
            warm.fit(X0, other)
            record("bad parameter", name, False, "warm start, other targets accepted")
        except Exception as exc:
            record("bad parameter", name, is_clear(exc), repr(exc))
    kinds = sorted(tried, key=lambda k: list(tried).index(k))
    print(f"{'case kind':<16} {'configurations':>14} {'cases':>6} {'failures':>9}")
    print("-" * 48)
    for kind in kinds:
        print(
            f"{kind:<16} {len(config_names[kind]):>14} {tried[kind]:>6} "
            f"{failed[kind]:>9}"
        )
    total = sum(tried.values())
    print("-" * 48)
    print(f"{'all':<16} {len(configs):>14} {total:>6} {sum(failed.values()):>9}")
    print(f"({time.perf_counter() - start:.0f} s)")
    for kind in kinds:
        for line in examples[kind]:
            print(f"  {kind}: {line}")


if __name__ == "__main__":
    main()
