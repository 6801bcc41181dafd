"""Generate the teaching notebooks (*.ipynb) from their percent-format sources (*.py).

Every `notebooks/<name>.py` whose name does not start with `_` is a notebook written in jupytext's
percent format: `# %%` starts a code cell, `# %% [markdown]` a markdown cell (its lines commented).
After editing one, or adding one, regenerate the notebooks (outputs stripped, Colab TPU metadata):

    python notebooks/_build.py            # writes notebooks/<name>.ipynb
    python notebooks/_build.py --check    # exit 1 if a committed notebook's cells differ

`jupytext --to ipynb notebooks/<name>.py` gives the same cells without the Colab metadata.
tests/test_notebooks.py checks that the two agree and executes every notebook on a CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
# Colab opens the notebook on a TPU runtime; kernelspec lets nbclient and Jupyter run it anywhere.
METADATA = {
    "accelerator": "TPU",
    "colab": {"provenance": [], "toc_visible": True},
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def sources(folder: Path = HERE) -> list[Path]:
    """The notebook sources in `folder`: every *.py whose name does not start with `_`."""
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook of a percent-format source, without outputs, with stable cell ids."""
    nb = jupytext.read(source, fmt="py:percent")
    cells = []
    for i, cell in enumerate(nb.cells):
        make = nbformat.v4.new_markdown_cell if cell.cell_type == "markdown" else (
            nbformat.v4.new_code_cell)
        new = make(cell.source)
        new["id"] = f"{source.stem[:12]}-{i:02d}"  # stable ids keep regenerated files diff-free
        cells.append(new)
    out = nbformat.v4.new_notebook(cells=cells, metadata=METADATA)
    nbformat.validate(out)
    return out


def cell_sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(cell type, source) of every cell: what a notebook and its source must agree on."""
    return [(c.cell_type, c.source) for c in nb.cells]


def main(argv: list[str] | None = None) -> int:
    """Write every notebook, or with --check report those whose cells differ from the source."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a committed notebook's cells differ from its source")
    args = parser.parse_args(argv)
    stale = []
    for source in sources():
        nb, path = build(source), source.with_suffix(".ipynb")
        if args.check:
            if not path.exists() or cell_sources(nbformat.read(path, as_version=4)) != (
                    cell_sources(nb)):
                stale.append(str(path))
        else:
            path.write_text(nbformat.writes(nb) + "\n")
            print(f"wrote {path}")
    if stale:
        print("out of date (run python notebooks/_build.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
