"""The report as files: ``report.json``, a PNG chart (per label: stacked outcomes; the IoU histogram; with model
versions, the learning curve: acceptance per version) and an HTML page with the tables and the chart. matplotlib
runs headless (Agg) and is imported only when a chart is drawn."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchlabel.report.matching import ACCEPT_IOU, MATCH_IOU

log = logging.getLogger(__name__)

#: Stacked bar segments, in order, with their colours (colour-blind safe Okabe-Ito palette).
SEGMENTS = (
    ("accepted", "#009E73"),
    ("edited", "#F0E442"),
    ("relabeled", "#E69F00"),
    ("deleted", "#D55E00"),
    ("added", "#0072B2"),
)
CHART_NAME = "report.png"
HTML_NAME = "report.html"
JSON_NAME = "report.json"


def render_chart(report: Mapping[str, Any], path: Path) -> Path:
    """Draw the two panels of ``report`` (:func:`batchlabel.report.metrics.report_json`) into a PNG at ``path``.

    Labels are the user's text and are drawn verbatim: no ``$...$`` mathematics (``text.parse_math``), no LaTeX, so
    a label like ``$x$`` or ``$\\frac{a$`` is shown as typed.
    """
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        return _draw_chart(report, path)


def _draw_chart(report: Mapping[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    labels = report["labels"]
    names = list(labels)
    curve = report.get("learning_curve") or []
    figure, panels = plt.subplots(
        1, 3 if curve else 2, figsize=(17 if curve else 12, max(3.8, 0.55 * len(names) + 2.3)),
        gridspec_kw={"width_ratios": [3, 2, 2] if curve else [3, 2]}, layout="constrained",
    )
    bars, histogram = panels[0], panels[1]
    if curve:
        _draw_learning_curve(panels[2], curve)
    left = [0] * len(names)
    positions = list(range(len(names)))
    for key, colour in SEGMENTS:
        values = [labels[name][key] for name in names]
        bars.barh(positions, values, left=left, color=colour, edgecolor="white", label=key)
        for y, (start, value) in enumerate(zip(left, values, strict=True)):
            if value:
                bars.text(start + value / 2, y, str(value), ha="center", va="center", fontsize=10)
        left = [a + b for a, b in zip(left, values, strict=True)]
    bars.set_yticks(positions, [f"{name}\nmean IoU {_fmt(labels[name]['mean_iou'])}" for name in names])
    bars.invert_yaxis()
    bars.set_xlabel("objects in reviewed tasks")
    tasks = report["tasks"]
    bars.set_title(f"What review did to the predicted objects ({tasks['reviewed']} of {tasks['total']} tasks reviewed)")
    handles, legend_labels = bars.get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="outside lower left", ncols=len(SEGMENTS), fontsize=9)
    bars.xaxis.get_major_locator().set_params(integer=True)
    edges = report["iou_histogram"]["bin_edges"]
    counts = report["iou_histogram"]["counts"]
    histogram.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges[:-1], edges[1:], strict=True)],
                  align="edge", color="#56B4E9", edgecolor="#0072B2")
    histogram.axvline(MATCH_IOU, color="#D55E00", linestyle="--", linewidth=1.5, label=f"match {MATCH_IOU}", zorder=3)
    histogram.axvline(ACCEPT_IOU, color="#009E73", linestyle="--", linewidth=1.5, label=f"accept {ACCEPT_IOU}",
                      zorder=3)
    histogram.set_xlim(0, 1)
    histogram.set_xlabel("IoU of predicted object with its final object (0 = deleted)")
    histogram.set_ylabel("predicted objects")
    histogram.set_title("IoU after review")
    histogram.yaxis.get_major_locator().set_params(integer=True)
    histogram.legend(fontsize=9, loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _draw_learning_curve(axes: Any, curve: list[Mapping[str, Any]]) -> None:
    """Acceptance per model version (``report["learning_curve"]``, in its order), each point's x tick the reviewed
    tasks the version was trained on ("-": not a trained model)."""
    positions = list(range(len(curve)))
    acceptance = [row["acceptance"] if row["acceptance"] is not None else float("nan") for row in curve]
    axes.plot(positions, acceptance, marker="o", color="#0072B2")
    for x, row in zip(positions, curve, strict=True):
        if row["acceptance"] is not None:
            axes.annotate(f"{row['acceptance']:.2f} of {row['reviewed_objects']}", (x, row["acceptance"]),
                          textcoords="offset points", xytext=(0, 7), ha="center", fontsize=9)
    ticks = ["-" if row["trained_on_reviewed_tasks"] is None else str(row["trained_on_reviewed_tasks"])
             for row in curve]
    axes.set_xticks(positions, ticks)
    axes.set_xlim(-0.5, len(curve) - 0.5)
    axes.set_ylim(0, 1.1)
    axes.set_xlabel("model version by reviewed tasks trained on (-: none)")
    axes.set_ylabel("accepted / predicted objects reviewed")
    axes.set_title("Learning curve: acceptance per model version")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def render_html(report: Mapping[str, Any], path: Path, *, chart_name: str = CHART_NAME) -> Path:
    """Write the HTML page (tables + the chart next to it) for ``report`` at ``path``."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("batchlabel.report", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    environment.filters["fmt"] = _fmt
    html = environment.get_template("report.html.j2").render(
        report=report, chart_name=chart_name, columns=[key for key, _ in SEGMENTS], match_iou=MATCH_IOU,
        accept_iou=ACCEPT_IOU,
    )
    path.write_text(html, encoding="utf-8")
    return path


def write_report_files(report: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """``report.json``, ``report.png`` and ``report.html`` in ``out`` (created). Returns the paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    chart = render_chart(report, out / CHART_NAME)
    html = render_html(report, out / HTML_NAME)
    log.info("wrote %s, %s and %s", json_path, chart, html)
    return {"json": json_path, "chart": chart, "html": html}
