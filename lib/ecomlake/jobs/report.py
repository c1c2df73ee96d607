"""report: one self-contained HTML report (plots embedded) from the gold tables, with suggestions.

  ./spark-submit.sh report [--as-of 2019-12-01] [--output lakehouse/reports/report.html]

Sections: funnel and conversion over time; sessions and cohort retention; segments and customer
value; recommendation and model quality; forecasts against actuals; price elasticities; risk
alerts; review sentiment; inventory suggestions; demand by region (a region x week heatmap and a map);
data and model monitoring (the newest `monitor` run). Each ends with plain-language suggestions
computed from the data (who to target with a coupon, what to restock, which price to test).
A section whose tables are missing is skipped with a note naming the job to run. --as-of picks
the forecasts and inventory of that date (default: the newest). The file is written through
Spark's file system layer, so --output may be on DBFS, S3 or HDFS; default:
<lake_root>/reports/report.html.
"""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from ecomlake import lake
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.report import build_report

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: dict, as_of: str | None = None, output: str | None = None) -> dict:
    root = config["lake_root"]
    as_of = parse_as_of(as_of) if as_of else None
    output = output or f"{root.rstrip('/')}/reports/report.html"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page, sections = build_report(spark, root, as_of, generated)
    lake.write_text_file(spark, output, page)
    for s in sections:
        state = f"skipped: {s.skipped}" if s.skipped else f"{s.images} chart(s), {len(s.suggestions)} suggestion(s)"
        log.info(f"report  {s.title:<36} {state}")
    log.info(f"report: {len(page) / 1024:,.0f} KiB -> {output}")
    return {"output": output, "sections": {s.key: (s.skipped is None) for s in sections},
            "images": sum(s.images for s in sections)}


def main(argv=None) -> int:
    parser = job_parser("report", __doc__)
    parser.add_argument("--as-of", help="date of the forecasts and inventory to show (default: newest)")
    parser.add_argument("--output", help="where to write the HTML (default: <lake_root>/reports/report.html)")
    return run_job("report", parser, lambda spark, config, a: run(spark, config, a.as_of, a.output), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))
