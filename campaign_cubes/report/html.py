"""What the report's templates show: cells, tables, figures, panels, and the Jinja2 environment.

The markup lives in `templates/` (Jinja2, autoescaped: labels and event types come
from the database and are not trusted). This module holds only the values the
templates receive. The page is one file with its style inline and its charts as PNG
files beside it (relative links): it opens from disk, offline, in any browser.
Every numeric cell carries its exact value in `data-value`, so tests (and curious
users) can compare the rounded display with the aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


@dataclass(frozen=True)
class Cell:
    text: str
    value: str | None = None  # exact value of a numeric cell
    numeric: bool = False
    css: str = ""
    title: str = ""  # tooltip

    @property
    def classes(self) -> str:
        return " ".join(c for c in ("num" if self.numeric else "", self.css) if c)


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


def thousands(value: int) -> str:
    return f"{value:,}"


def long_date(day: date | None) -> str:
    return "–" if day is None else f"{day.day} {day:%b %Y}"


@dataclass(frozen=True)
class Table:
    id: str
    caption: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    footer: Sequence[Sequence[Cell]] = ()

    @property
    def numeric_headers(self) -> list[tuple[str, bool]]:
        """Each header and whether its column is numeric (aligned right like its cells)."""
        return [(h, bool(self.rows) and self.rows[0][i].numeric) for i, h in enumerate(self.headers)]


@dataclass(frozen=True)
class Figure:
    src: str  # relative to the page
    alt: str
    caption: str
    width: int
    height: int


@dataclass(frozen=True)
class NoData:
    """The panel shown instead of charts and tables when the period holds nothing."""

    what: str
    start: date | None
    end: date | None

    @property
    def period(self) -> str:
        if self.start is None or self.end is None:
            return "the published aggregates hold no dated row yet"
        return f"nothing between {long_date(self.start)} and {long_date(self.end)}"


@dataclass(frozen=True)
class Kpi:
    label: str
    value: str
    detail: str
    key: str


@dataclass(frozen=True)
class Section:
    """One section of the page: its template (in templates/) and the values it shows."""

    template: str
    values: Mapping[str, object] = field(default_factory=dict)


@cache
def environment() -> Environment:
    # Autoescaping on for every .html template: values from the database are untrusted.
    env = Environment(
        loader=PackageLoader("campaign_cubes.report", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a misspelt value fails the report instead of showing nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["thousands"] = thousands
    env.globals["long_date"] = long_date
    return env


def render(template: str, **values: object) -> str:
    return environment().get_template(template).render(**values)
