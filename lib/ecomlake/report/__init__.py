"""The decision report: one self-contained HTML file (plots embedded as PNG) from the gold tables.

Every section reads only small aggregates (per day, per category, per cohort week, per model,
the top-N rows), draws them with matplotlib, and ends with suggestions computed from the data.
A section whose tables are missing is skipped with a note naming the job that writes them.
`build_report(spark, lake_root, as_of)` returns the HTML; the `report` job writes it.

Three layers, so that a rule can be tested without a lake or a plot: `data` (per section, the
Spark queries -> small pandas frames, numbers and suggestion texts), `rules` (the business rules:
pure functions from those numbers to suggestions), `render` (matplotlib and HTML, no Spark).
"""
from __future__ import annotations

from pyspark.sql import SparkSession

from ecomlake.report import data, render
from ecomlake.report.data import MissingTable
from ecomlake.report.render import Section

# key (the HTML anchor), title, the query that returns the section's data, the drawing of it.
SECTIONS = [
    ("funnel", "Funnel and conversion over time", data.funnel, render.funnel),
    ("retention", "Sessions and cohort retention", data.retention, render.retention),
    ("customers", "Segments and customer value", data.customers, render.customers),
    ("models", "Recommendation and model quality", data.models, render.models),
    ("forecasts", "Forecasts against actuals", data.forecasts, render.forecasts),
    ("elasticity", "Price elasticities", data.elasticity, render.elasticity),
    ("risk", "Risk alerts", data.risk, render.risk),
    ("reviews", "Review sentiment", data.reviews, render.reviews),
    ("aspects", "Review aspects and service triage", data.aspects, render.aspects),
    ("inventory", "Inventory suggestions", data.inventory, render.inventory),
    ("regions", "Demand by region", data.regions, render.regions),
    ("monitoring", "Data and model monitoring", data.monitoring, render.monitoring),
]
SECTION_TITLES = [title for _, title, _, _ in SECTIONS]

__all__ = ["MissingTable", "SECTIONS", "SECTION_TITLES", "Section", "build_report"]


def build_report(spark: SparkSession, lake_root: str, as_of: str | None = None, generated_at: str = "") -> tuple[str, list[Section]]:
    sections = []
    for key, title, query, draw in SECTIONS:
        try:
            content = query(spark, lake_root, as_of)
        except MissingTable as missing:
            sections.append(Section(key, title, skipped=str(missing)))
            continue
        section = Section(key, title, suggestions=content["suggestions"])
        draw(section, content)
        sections.append(section)
    return render.page(sections, lake_root, as_of, generated_at), sections
