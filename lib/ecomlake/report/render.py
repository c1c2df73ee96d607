"""The report's rendering: matplotlib plots (embedded as PNG) and HTML from the data layer's dicts.

One function per section draws what `data` returned for it into a Section; `page` joins the
sections into one self-contained HTML file. No Spark here.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field


@dataclass
class Section:
    key: str
    title: str
    parts: list[str] = field(default_factory=list)      # HTML fragments in order
    suggestions: list[str] = field(default_factory=list)
    skipped: str | None = None
    images: int = 0

    def plot(self, figure) -> None:
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(figure)
        data = base64.b64encode(buffer.getvalue()).decode()
        self.parts.append(f'<img alt="{html.escape(self.title)} chart {self.images + 1}" src="data:image/png;base64,{data}">')
        self.images += 1

    def table(self, frame, caption: str = "", formats: dict | None = None) -> None:
        formats = formats or {}
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = []
        for _, row in frame.iterrows():
            cells = []
            for c in frame.columns:
                value = row[c]
                missing = value is None or (isinstance(value, float) and value != value)
                text = "—" if missing else formats[c].format(value) if c in formats else value
                cells.append(f"<td>{html.escape(str(text))}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")

    def text(self, paragraph: str) -> None:
        self.parts.append(f"<p>{html.escape(paragraph)}</p>")


def _figure(width=8.0, height=3.2, rows=1, columns=1, **options):
    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG only
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(width, height), **options)


# ---- sections: each draws the dict its namesake in `data` returns --------------------------------

def funnel(s: Section, d: dict) -> None:
    daily, by_category = d["daily"], d["by_category"]
    fig, ax = _figure()
    for c in ("views", "carts", "purchases"):
        ax.plot(daily["event_date"], daily[c], label=c)
    ax.set_yscale("log"), ax.set_title("Events per day (log scale)"), ax.legend(loc="upper left")
    fig.autofmt_xdate()
    s.plot(fig)
    fig, ax = _figure()
    ax.plot(daily["event_date"], 100 * daily["conversion"], color="tab:green")
    ax.set_title("Sessions that buy, % of sessions that view"), ax.set_ylabel("%")
    fig.autofmt_xdate()
    s.plot(fig)
    s.table(by_category, "Top categories by revenue", {"cart_to_purchase": "{:.1%}", "revenue": "{:,.0f}"})


def retention(s: Section, d: dict) -> None:
    import numpy as np

    retention_ = d["retention"]
    fig, ax = _figure(8, 3.6)
    image = ax.imshow(np.ma.masked_invalid(retention_.to_numpy() * 100), cmap="Blues", aspect="auto", vmin=0, vmax=100)
    ax.set_yticks(range(len(retention_.index)), [str(c) for c in retention_.index])
    ax.set_xlabel("weeks since the first session"), ax.set_title("Weekly cohorts: % of users active")
    fig.colorbar(image, ax=ax)
    s.plot(fig)
    s.text(f"{d['sessions']:,} sessions; mean duration {d['mean_duration_seconds'] / 60:.1f} min; "
           f"{d['converted']:.1%} end in a purchase.")


def customers(s: Section, d: dict) -> None:
    sizes, value = d["segments"], d["value"]
    if sizes is not None:
        fig, ax = _figure(8, 3)
        ax.barh(sizes["segment_name"], sizes["customers"], color="tab:purple")
        ax.set_title(f"Customer segments (RFM + KMeans), as of {d['segments_as_of']}"), ax.invert_yaxis()
        s.plot(fig)
        s.table(sizes, "Segments")
    if value is not None:
        calibration = value["calibration"]
        fig, ax = _figure(8, 3)
        x = range(len(calibration))
        ax.bar([i - 0.2 for i in x], calibration["actual_holdout_purchases"], width=0.4, label="actual")
        ax.bar([i + 0.2 for i in x], calibration["predicted_holdout_purchases"], width=0.4, label="BG/NBD predicted")
        ax.set_xticks(list(x), calibration["calibration_frequency"])
        ax.set_xlabel("repeat purchases in the calibration period"), ax.set_ylabel("holdout purchases per customer")
        ax.set_title(f"Customer value model check ({value['source']}): predicted vs actual"), ax.legend()
        s.plot(fig)
        s.text(f"{value['source']}: median CLV {value['median_clv']:.2f}, top 10% from {value['top_decile_clv']:.2f}; "
               f"the top 10% of customers hold {value['top_decile_share']:.0%} of the expected value.")


def models(s: Section, d: dict) -> None:
    s.table(d["table"], "Newest run of every model (held-out data)", {"value": "{:.4f}"})


def forecasts(s: Section, d: dict) -> None:
    history, ahead = d["history"], d["ahead"]
    fig, axes = _figure(9, 4.6, 2, 2, sharex=True)
    for ax, category in zip(axes.flat, d["categories"]):
        h = history[history["series_key"] == category].sort_values("event_date")
        f = ahead[ahead["series_key"] == category].sort_values("forecast_date")
        ax.plot(h["event_date"], h["units"], label="actual units")
        ax.plot(f["forecast_date"], f["forecast"], label="forecast", color="tab:orange")
        if "forecast_low" in f and f["forecast_low"].notna().any():
            ax.fill_between(f["forecast_date"], f["forecast_low"], f["forecast_high"], color="tab:orange",
                            alpha=0.2, label="backtest band (90 %)")
        if "seasonal_naive" in f:
            ax.plot(f["forecast_date"], f["seasonal_naive"], label="seasonal naive", color="tab:gray",
                    linestyle="--", linewidth=1)
        ax.set_title(category, fontsize=9)
    axes.flat[0].legend(fontsize=8)
    fig.autofmt_xdate()
    s.plot(fig)
    if d["quality"] is not None:
        s.table(d["quality"], "Hold-out error of the forecasters (WAPE: lower is better)",
                {"category_wape": "{:.3f}", "product_wape": "{:.3f}"})


def elasticity(s: Section, d: dict) -> None:
    for source, group in d["by_source"].items():
        fig, ax = _figure(8, 0.3 * len(group) + 1.2)
        errors = [group["elasticity"] - group["ci_low"], group["ci_high"] - group["elasticity"]]
        ax.barh(group["segment"], group["elasticity"], xerr=errors, color="tab:red", alpha=0.7)
        ax.axvline(-1, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"Price elasticity by {'brand' if source == 'dominicks_oj' else 'category'} ({source}), 95% CI; "
                     f"left of -1: a price cut raises revenue", fontsize=9)
        s.plot(fig)


def risk(s: Section, d: dict) -> None:
    reasons = d["reasons"]
    if len(reasons):
        fig, ax = _figure(8, 0.35 * len(reasons) + 1.0)
        ax.barh(reasons["reason"], reasons["count"], color="tab:gray")
        ax.set_title(f"Why {d['alerts']:,} users were alerted (as of {d['as_of']})", fontsize=9), ax.invert_yaxis()
        s.plot(fig)
    s.table(d["top"], "The ten riskiest users")


def reviews(s: Section, d: dict) -> None:
    by_department = d["by_department"]
    fig, ax = _figure(8, 2.8)
    ax.barh(by_department["department"], 100 * by_department["not_recommended"], color="tab:brown")
    ax.set_title("Reviews that do not recommend the item, % by department"), ax.invert_yaxis()
    s.plot(fig)
    if d["models"] is not None:
        s.table(d["models"], "Sentiment models on the held-out reviews",
                {"auc": "{:.3f}", "accuracy": "{:.3f}", "macro_f1": "{:.3f}"})
    if d["words"] is not None:
        s.text("Words that push towards recommending: " + ", ".join(d["words"]["for"]))
        s.text("Words that push against: " + ", ".join(d["words"]["against"]))


def aspects(s: Section, d: dict) -> None:
    by_class = d["by_class"]
    if len(by_class):
        mentions = by_class.pivot_table(index=["department", "class_name"], columns="aspect", values="mention_share")
        negative = by_class.pivot_table(index=["department", "class_name"], columns="aspect", values="negative_share")
        fig, axes = _figure(9, 0.28 * len(mentions) + 1.6, columns=2)
        for ax, frame, title in ((axes[0], mentions, "Share of reviews that talk about it"),
                                 (axes[1], negative.reindex(mentions.index), "Share of those that are negative")):
            ax.imshow(frame.to_numpy(dtype=float), aspect="auto", cmap="Oranges", vmin=0, vmax=1)
            ax.set_xticks(range(len(frame.columns)), [c.replace("_", " ") for c in frame.columns], rotation=30,
                          fontsize=7)
            ax.set_yticks(range(len(frame.index)), [f"{d_} / {c}" for d_, c in frame.index], fontsize=7)
            ax.set_title(title, fontsize=9)
        axes[1].set_yticks([])
        s.plot(fig)
    s.table(d["queue"], "Service queue: reviews per action, and how many go to a person (low confidence)",
            {"mean_confidence": "{:.2f}"})
    if d["models"] is not None:
        s.table(d["models"], "Aspect and triage methods against the 420 hand-labelled reviews",
                {"macro_f1": "{:.3f}", "accuracy": "{:.3f}"})


def inventory(s: Section, d: dict) -> None:
    top = d["top"]
    fig, ax = _figure(8, 2.6)
    ax.bar(top["product_id"].astype(str), top["lead_time_demand"], label="expected lead-time demand")
    ax.bar(top["product_id"].astype(str), top["safety_stock"], bottom=top["lead_time_demand"], label="safety stock")
    ax.set_title("Reorder point = lead-time demand + safety stock (top 10 products)"), ax.legend(fontsize=8, loc="lower right")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    s.plot(fig)
    s.table(top, f"Highest reorder points as of {d['as_of']} (lead time {d['lead_time_days']} days)",
            {"lead_time_demand": "{:.1f}", "safety_stock": "{:.1f}"})


STYLE = """body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;color:#222}
h1{margin-bottom:0}section{border-top:1px solid #ddd;padding:.5em 0 1em}img{max-width:100%;display:block;margin:.5em 0}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
caption{text-align:left;font-weight:600;padding:.3em 0}.suggest{background:#eef6ee;border-left:4px solid #4a4;padding:.3em 1em}
.skipped{color:#a60}nav a{margin-right:.8em}"""


def page(sections: list[Section], lake_root: str, as_of: str | None = None, generated_at: str = "") -> str:
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        body.append(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>')
        if s.skipped:
            body.append(f'<p class="skipped">Skipped: {html.escape(s.skipped)}</p>')
        body.extend(s.parts)
        if s.suggestions:
            body.append('<div class="suggest"><h3>Suggestions</h3><ul>' +
                        "".join(f"<li>{html.escape(t)}</li>" for t in s.suggestions) + "</ul></div>")
        body.append("</section>")
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>ecomlake report</title>"
            f"<style>{STYLE}</style></head><body><h1>ecomlake report</h1>"
            f"<p>Lake: {html.escape(lake_root)}{' · as of ' + html.escape(as_of) if as_of else ''}"
            f"{' · generated ' + html.escape(generated_at) if generated_at else ''}</p><nav>{nav}</nav>"
            + "".join(body) + "</body></html>")


def monitoring(s: Section, d: dict) -> None:
    per_day = d["per_day"]
    if len(per_day):
        table = per_day.pivot_table(index="monitored_date", columns="check", values="alerts", aggfunc="sum").fillna(0)
        fig, ax = _figure(8, 2.6)
        bottom = None
        for check in table.columns:
            ax.bar(table.index, table[check], bottom=bottom, label=check)
            bottom = table[check] if bottom is None else bottom + table[check]
        ax.set_title(f"Data alerts per day (monitor as of {d['as_of']}; {d['total']} alerts in all)", fontsize=9)
        ax.legend(fontsize=7), fig.autofmt_xdate()
        s.plot(fig)
    if len(d["alerts"]):
        s.table(d["alerts"], "The first alerts (score: robust z, failing share, PSI or AUC drop)")
    if len(d["drift"]):
        s.table(d["drift"], "Largest drift of model inputs and scores (PSI; above 0.25 alerts)")
    if len(d["decay"]):
        s.table(d["decay"], "Models on dates whose labels have arrived")


def regions(s: Section, d: dict) -> None:
    weekly = d["weekly"]
    if len(weekly):
        grid = weekly.pivot_table(index="region", columns="week", values="revenue", aggfunc="sum").fillna(0)
        fig, ax = _figure(8, 0.4 * len(grid) + 1.2)
        image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="viridis")
        ax.set_yticks(range(len(grid.index)), list(grid.index))
        ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], rotation=45, fontsize=7)
        ax.set_title("Revenue by region and week", fontsize=9)
        fig.colorbar(image, ax=ax)
        s.plot(fig)
    placed = d["totals"].dropna(subset=["latitude", "longitude"])
    if len(placed):
        fig, ax = _figure(5, 4)
        sizes = 1500 * placed["revenue"] / max(placed["revenue"].max(), 1e-9)
        ax.scatter(placed["longitude"], placed["latitude"], s=sizes, alpha=0.5, color="tab:blue")
        for _, row in placed.iterrows():
            ax.annotate(row["region"], (row["longitude"], row["latitude"]), ha="center", fontsize=8)
        ax.set_xlabel("longitude"), ax.set_ylabel("latitude")
        ax.set_title("Regions at their customers' mean coordinates, sized by revenue", fontsize=9)
        s.plot(fig)
    s.table(d["totals"].drop(columns=["latitude", "longitude"], errors="ignore"), "Regions",
            {"revenue": "{:,.0f}", "conversion": "{:.2%}"})
    if len(d["alerts"]):
        s.table(d["alerts"], "Weeks whose conversion left the region's norm")
    if d["next_week"] is not None and len(d["next_week"]):
        s.table(d["next_week"], "Units forecast for the next days per region (forecast: reconciled, the regions add "
                "up to the total; top_down: the total split by the last 28 days' shares)",
                {m: "{:,.0f}" for m in ("forecast", "top_down", "seasonal_naive")})
    if d["backtest"] is not None and len(d["backtest"]):
        s.table(d["backtest"], "Forecast error per level in the rolling-origin backtest (WAPE, lower is better)")
    if d["price_response"] is not None and len(d["price_response"]):
        s.table(d["price_response"], "How strongly each region answers prices, against all regions together (1 = "
                "the same)")
