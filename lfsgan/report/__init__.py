"""Tables, figures and sample mosaics from the evaluation outputs."""

from lfsgan.report.figures import plot_forgetting, plot_along_tasks, sample_mosaic
from lfsgan.report.tables import collect_metrics, summary_table, forgetting_tables, to_markdown

__all__ = [
    "collect_metrics",
    "summary_table",
    "forgetting_tables",
    "to_markdown",
    "plot_forgetting",
    "plot_along_tasks",
    "sample_mosaic",
]
