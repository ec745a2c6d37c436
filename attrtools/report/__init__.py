"""Reports and views: tables and figures instead of dumps, one self-contained HTML file per report
(jinja2 templates, images embedded, opens offline), and the same fragments in Jupyter.

Imports nothing of attrtools but its types (and the atomic file writer); tools build their reports
from their own output files (``attrtools.pruning.report`` and friends).
"""
from .format import class_name, fmt_number, fmt_percent, fmt_seconds, label_names_from_config, model_label
from .page import Figure, Report, Section, Table, figure_from_matplotlib, figure_from_png, figure_from_svg
from .views import (attribution_heatmap, attribution_html, attribution_page, attribution_report, is_signed,
                    matrix_view, summary_report, token_heatmap, word_heatmap)

__all__ = ["Report", "Section", "Table", "Figure", "figure_from_matplotlib", "figure_from_png", "figure_from_svg",
           "fmt_seconds", "fmt_number", "fmt_percent", "class_name", "model_label", "label_names_from_config",
           "token_heatmap", "word_heatmap", "attribution_heatmap", "matrix_view", "attribution_report", "attribution_html",
           "attribution_page", "summary_report", "is_signed"]
