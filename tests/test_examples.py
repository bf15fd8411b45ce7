"""Every script in examples/ runs to the end, as the docs' gallery runs it."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, capsys):
    uses_matplotlib = "matplotlib" in path.read_text()
    if uses_matplotlib:
        matplotlib = pytest.importorskip("matplotlib")
        matplotlib.use("Agg")
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        if uses_matplotlib:
            import matplotlib.pyplot as plt

            plt.close("all")
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_gallery_page(path):
    # sphinx-gallery needs a docstring with a title first, and a plot_ name to
    # run the example while building the docs
    assert path.name.startswith("plot_")
    lines = path.read_text().splitlines()
    assert lines[0] == '"""'
    title, underline = lines[1], lines[2]
    assert title and set(underline) == {"="} and len(underline) >= len(title)


def test_examples_were_found():
    assert len(EXAMPLES) >= 8
