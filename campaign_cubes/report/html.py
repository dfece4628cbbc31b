"""HTML building blocks of the report: escaped cells, tables, figures, the page shell.

The page is one file with its style inline and its charts as PNG files beside it
(relative links): it opens from disk, offline, in any browser. Every numeric cell
carries its exact value in `data-value`, so tests (and curious users) can compare
the rounded display with the aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape


@dataclass(frozen=True)
class Cell:
    text: str
    value: str | None = None  # exact value of a numeric cell
    numeric: bool = False
    css: str = ""
    title: str = ""  # tooltip

    def render(self, tag: str = "td") -> str:
        classes = " ".join(c for c in ("num" if self.numeric else "", self.css) if c)
        attributes = f' class="{classes}"' if classes else ""
        if self.value is not None:
            attributes += f' data-value="{escape(self.value)}"'
        if self.title:
            attributes += f' title="{escape(self.title)}"'
        return f"<{tag}{attributes}>{escape(self.text)}</{tag}>"


def text(value: object, css: str = "") -> Cell:
    return Cell("" if value is None else str(value), css=css)


def count(value: int) -> Cell:
    return Cell(f"{value:,}", value=str(value), numeric=True)


def rate(value: float | None) -> Cell:
    """A share shown as a percentage with one decimal; "–" when undefined."""
    if value is None:
        return Cell("–", value="", numeric=True, css="muted")
    return Cell(f"{value:.1%}", value=repr(value), numeric=True)


def seconds(value: float | None, shown: str) -> Cell:
    if value is None:
        return Cell("–", value="", numeric=True, css="muted")
    return Cell(shown, value=repr(value), numeric=True)


def long_date(day: date | None) -> str:
    return "–" if day is None else f"{day.day} {day:%b %Y}"


def table(table_id: str, caption: str, headers: Sequence[str], rows: Sequence[Sequence[Cell]],
          footer: Sequence[Sequence[Cell]] = ()) -> str:
    """A table; headers of numeric columns align right like their cells."""
    numeric = [bool(rows) and rows[0][i].numeric for i in range(len(headers))]
    head = "".join(f'<th scope="col"{" class=num" if num else ""}>{escape(h)}</th>' for h, num in zip(headers, numeric))
    body = "".join("<tr>" + "".join(cell.render() for cell in row) + "</tr>" for row in rows)
    foot = "".join('<tr class="total">' + "".join(cell.render() for cell in row) + "</tr>" for row in footer)
    return (f'<div class="table-wrap"><table id="{escape(table_id)}"><caption>{escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            f'{"<tfoot>" + foot + "</tfoot>" if foot else ""}</table></div>')


def figure(src: str, alt: str, caption: str, width: int, height: int) -> str:
    return (f'<figure class="chart"><img src="{escape(src)}" alt="{escape(alt)}" width="{width}" '
            f'height="{height}"><figcaption>{escape(caption)}</figcaption></figure>')


def no_data(what: str, start: date | None, end: date | None) -> str:
    if start is None or end is None:
        period = "the published aggregates hold no dated row yet"
    else:
        period = f"nothing between {long_date(start)} and {long_date(end)}"
    return (f'<div class="no-data" role="status"><strong>No data for this period</strong>'
            f"<span>{escape(what)}: {escape(period)}.</span></div>")


def note(*paragraphs: str) -> str:
    """Small print under a section; the paragraphs are trusted HTML written in this package."""
    return '<div class="notes">' + "".join(f"<p>{p}</p>" for p in paragraphs) + "</div>"


def kpi(label: str, value: str, detail: str, key: str) -> str:
    return (f'<div class="kpi" data-kpi="{escape(key)}"><div class="kpi-label">{escape(label)}</div>'
            f'<div class="kpi-value">{escape(value)}</div><div class="kpi-detail">{escape(detail)}</div></div>')


STYLE = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --accent:#2f6f9f; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#13293d; color:#fff; padding:28px 40px 18px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; }
header .meta { margin:0; color:#c7d3de; font-size:14px; }
header code { background:#2a4761; color:#fff; }
nav { margin-top:14px; display:flex; gap:8px; flex-wrap:wrap; }
nav a { color:#fff; text-decoration:none; font-size:14px; padding:4px 12px; border:1px solid #3e5a73;
        border-radius:14px; }
nav a:hover { background:#2a4761; }
main { max-width:1240px; margin:0 auto; padding:24px 32px 48px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit, minmax(165px, 1fr)); gap:12px; margin-bottom:24px; }
.kpi { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.kpi-label { color:var(--muted); font-size:12.5px; text-transform:uppercase; letter-spacing:.04em; }
.kpi-value { font-size:26px; font-weight:650; margin:2px 0; font-variant-numeric:tabular-nums; }
.kpi-detail { color:var(--muted); font-size:12.5px; }
section.report { background:#fff; border:1px solid var(--line); border-radius:8px; padding:22px 26px;
                 margin-bottom:24px; }
section.report h2 { margin:0 0 4px; font-size:21px; }
section.report h3 { margin:26px 0 8px; font-size:16px; }
.lead { margin:0 0 14px; color:var(--muted); }
figure.chart { margin:14px 0 6px; }
figure.chart img { display:block; width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:13.5px; margin-top:6px; }
.table-wrap { overflow-x:auto; margin:10px 0; }
table { border-collapse:collapse; width:100%; font-size:13.5px; }
caption { text-align:left; color:var(--muted); font-size:13.5px; padding-bottom:6px; }
th, td { padding:6px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { font-size:11.5px; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); background:#fafbfc;
     vertical-align:bottom; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.num { white-space:nowrap; }
td.muted { color:var(--muted); }
tr.total td { font-weight:650; border-top:2px solid #cbd2d9; background:#fafbfc; }
td.other { color:var(--muted); font-style:italic; }
td.label { min-width:13em; }
td[title] { text-decoration:underline dotted; cursor:help; }
.no-data { border:2px dashed #cbd2d9; border-radius:8px; padding:26px; margin:14px 0; text-align:center;
           color:var(--muted); background:#fafbfc; }
.no-data strong { display:block; font-size:18px; color:var(--ink); margin-bottom:4px; }
.notes { border-left:3px solid var(--line); padding-left:12px; margin-top:14px; color:var(--muted); font-size:13.5px; }
.notes p { margin:4px 0; }
code { font-size:12.5px; background:#f0f2f5; padding:1px 4px; border-radius:3px; }
footer { color:var(--muted); font-size:13px; text-align:center; padding:0 0 30px; }
"""


def page(title: str, meta: str, nav: Sequence[tuple[str, str]], body: str, footer: str) -> str:
    links = "".join(f'<a href="#{escape(anchor)}">{escape(label)}</a>' for anchor, label in nav)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p class=\"meta\">{meta}</p><nav>{links}</nav></header>"
        f"<main>{body}</main><footer>{footer}</footer></body></html>\n"
    )
