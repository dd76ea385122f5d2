"""Report notebooks: executed on a results folder (never loading a model) and exported to HTML."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from kick_core.results import atomic_write_text, iter_records
from kick_core.runner.execute import ipc_kernel_manager, kernel_env
from kick_core.runner.plan import NOTEBOOKS_DIR

log = logging.getLogger(__name__)

REPORTS = ("report_figures", "report_explorer")
"""The report notebooks run at the end of every study (``notebooks/<name>.ipynb``)."""
FIGURES = "figures"
"""Folder beside the report HTML where the report figures are saved as PNG and SVG."""


def export_html(notebook: str | Path, html_path: str | Path | None = None) -> Path:
    """Export an executed notebook to one self-contained HTML file (images embedded) next to it."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    html_path = Path(html_path) if html_path else notebook.with_suffix(".html")
    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
    return atomic_write_text(html_path, body)


def run_reports(results_dir: str | Path, out_dir: str | Path | None = None, *,
                reports: Sequence[str] = REPORTS, notebooks_dir: str | Path | None = None,
                html: bool = True) -> list[Path]:
    """Execute the report notebooks on ``results_dir`` into ``out_dir`` (default ``results_dir/report``).

    Returns the executed notebooks (and their HTML). A notebook with a ``figures_dir`` parameter
    also saves its figures as PNG + SVG in ``<out_dir>/figures/``. A report that fails is logged and
    kept (its executed notebook shows the failing cell); the others still run. Nothing runs without ok runs.
    """
    import papermill

    results_dir = Path(results_dir).resolve()
    if not any(True for _ in iter_records(results_dir)):
        log.warning("no finished runs under %s: no report", results_dir)
        return []
    out = Path(out_dir) if out_dir else results_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in reports:
        src = Path(notebooks_dir or NOTEBOOKS_DIR) / f"{name}.ipynb"
        dst = out / f"{name}.ipynb"
        parameters = {"results_dir": str(results_dir)}
        try:
            if "figures_dir" in papermill.inspect_notebook(str(src)):
                parameters["figures_dir"] = str((out / FIGURES).resolve())
            with kernel_env(1):
                papermill.execute_notebook(str(src), str(dst), parameters=parameters,
                                           progress_bar=False, kernel_name="python3",
                                           kernel_manager_class=ipc_kernel_manager())
        except Exception as err:  # noqa: BLE001 - one broken report must not hide the other
            log.error("report %s failed: %s (see %s)", name, str(err).splitlines()[0] if str(err) else err, dst)
            continue
        written.append(dst)
        if html:
            written.append(export_html(dst))
        log.info("report %s -> %s", name, dst)
    return written
