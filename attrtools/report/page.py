"""A report: title, a few facts, sections of tables and figures; rendered by jinja2 templates into
one self-contained HTML file (styles inline, images as data URIs, no network) or into a fragment
for a Jupyter cell (``_repr_html_``), with the same templates.

Blocks a section can hold: ``text`` (a paragraph), ``table`` (numbers formatted, best per column
marked), ``figure`` (a matplotlib ``Figure``, PNG bytes or inline SVG markup, always with a caption),
``facts`` (label/value pairs), ``row`` (blocks side by side, e.g. a figure with its numbers) and
``html`` (a fragment made by another renderer of this package, e.g. a token heat-map).
"""
from __future__ import annotations

import base64
import io
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from .format import fmt_number

_ids = itertools.count()


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("attrtools.report", "templates"),
                              autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                              trim_blocks=True, lstrip_blocks=True)


_ENV = None


def environment():
    """The package's jinja2 environment (autoescaping on; templates in ``attrtools/report/templates``)."""
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV


def markup(text: str):
    """Mark a fragment produced by one of our renderers as safe HTML."""
    from markupsafe import Markup

    return Markup(text)


def new_id(prefix: str = "at") -> str:
    """A document-unique element id (several views can share one notebook page)."""
    return f"{prefix}{os.getpid():x}{next(_ids)}"


# ------------------------------------------------------------------------------------ blocks
@dataclass
class Text:
    text: str
    kind: str = "text"
    muted: bool = False


@dataclass
class Table:
    """``columns``: header names; ``rows``: lists of cells (numbers are formatted here, strings kept);
    ``best``: ``{(row, column)}`` cells to mark; ``numeric``: columns aligned right (default: guessed)."""

    columns: list[str]
    rows: list[list[Any]]
    caption: str | None = None
    best: set = field(default_factory=set)
    digits: int = 3
    note: str | None = None
    kind: str = "table"

    def cells(self):
        out = []
        for r, row in enumerate(self.rows):
            out.append([{"text": fmt_number(v, self.digits) if not isinstance(v, str) else v,
                         "num": isinstance(v, (int, float)) and not isinstance(v, bool),
                         "best": (r, c) in self.best} for c, v in enumerate(row)])
        return out


@dataclass
class Figure:
    """``src``: a data URI (PNG) or ``svg``: inline markup. ``caption`` says what is drawn."""

    caption: str
    src: str | None = None
    svg: str | None = None
    alt: str = ""
    kind: str = "figure"
    wide: bool = False


@dataclass
class Facts:
    items: list[tuple[str, Any]]
    kind: str = "facts"

    def formatted(self):
        return [(k, fmt_number(v) if not isinstance(v, str) else v) for k, v in self.items]


@dataclass
class Html:
    markup: str
    kind: str = "html"


@dataclass
class Row:
    blocks: list
    kind: str = "row"


def figure_from_matplotlib(fig, caption: str, alt: str = "", dpi: int = 110, wide: bool = False) -> Figure:
    """PNG of a matplotlib ``Figure`` (made without pyplot) embedded as a data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return figure_from_png(buffer.getvalue(), caption, alt, wide=wide)


def figure_from_png(data: bytes, caption: str, alt: str = "", wide: bool = False) -> Figure:
    return Figure(caption=caption, src="data:image/png;base64," + base64.b64encode(data).decode("ascii"),
                  alt=alt or caption, wide=wide)


def figure_from_svg(svg: str, caption: str, wide: bool = True) -> Figure:
    start = svg.find("<svg")
    return Figure(caption=caption, svg=svg[start:] if start >= 0 else svg, alt=caption, wide=wide)


# ------------------------------------------------------------------------------------ structure
@dataclass
class Section:
    title: str
    intro: str | None = None
    blocks: list = field(default_factory=list)
    id: str = ""

    def text(self, text: str, muted: bool = False) -> "Section":
        self.blocks.append(Text(text, muted=muted))
        return self

    def table(self, columns, rows, caption=None, best=None, digits=3, note=None) -> "Section":
        self.blocks.append(Table(list(columns), [list(r) for r in rows], caption, set(best or ()), digits, note))
        return self

    def figure(self, figure: Figure) -> "Section":
        self.blocks.append(figure)
        return self

    def facts(self, items) -> "Section":
        self.blocks.append(Facts(list(items.items()) if isinstance(items, dict) else list(items)))
        return self

    def html(self, fragment: str) -> "Section":
        self.blocks.append(Html(fragment))
        return self

    def row(self, *blocks) -> "Section":
        self.blocks.append(Row(list(blocks)))
        return self

    def add(self, block) -> "Section":
        self.blocks.append(block)
        return self


@dataclass
class Report:
    """A titled page of sections. ``facts`` appear under the title (model, data, time)."""

    title: str
    subtitle: str | None = None
    facts: list = field(default_factory=list)
    sections: list = field(default_factory=list)

    def section(self, title: str, intro: str | None = None) -> Section:
        section = Section(title, intro, id=f"s{len(self.sections) + 1}")
        self.sections.append(section)
        return section

    def extend(self, other: "Report", prefix: str | None = None) -> "Report":
        """Append ``other``'s sections (titles prefixed), e.g. a tool's report inside the demo's."""
        for s in other.sections:
            copy = Section(f"{prefix}: {s.title}" if prefix else s.title, s.intro, list(s.blocks),
                           id=f"s{len(self.sections) + 1}")
            self.sections.append(copy)
        return self

    def _context(self, standalone: bool) -> dict:
        return {"report": self, "facts": Facts(list(self.facts)).formatted(), "standalone": standalone,
                "root_id": new_id("rep")}

    def to_html(self) -> str:
        """The whole page: one self-contained file (no external resources)."""
        return environment().get_template("page.html.j2").render(**self._context(True))

    def _repr_html_(self) -> str:
        return environment().get_template("fragment.html.j2").render(**self._context(False))

    def save(self, path: str) -> str:
        """Write ``to_html()`` to ``path`` atomically; returns the path."""
        from ..io import write_text

        return write_text(path, self.to_html())
