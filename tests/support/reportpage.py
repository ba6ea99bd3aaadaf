"""Reads a model report page back (html.parser): its tables' figures, sections and SVGs.

Tables of the report name their figures: a row carries ``data-revision`` (or ``data-run``,
``data-feature``, ``data-prediction``) and each cell ``data-field``; this parser keeps, per
table id, a list of rows as {field: text} plus the row's own attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Row:
    attrs: dict[str, str]
    cells: dict[str, str] = field(default_factory=dict)
    cell_attrs: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Page:
    title: str = ""
    tables: dict[str, list[Row]] = field(default_factory=dict)
    #: Text of each element with an id (sections, the missing box ...).
    texts: dict[str, str] = field(default_factory=dict)
    #: Attributes of each element with an id.
    ids: dict[str, dict[str, str]] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    svg_titles: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def rows(self, table: str, key: str = "data-revision") -> dict[str, Row]:
        return {r.attrs[key]: r for r in self.tables.get(table, []) if key in r.attrs}


VOID = {"meta", "br", "img", "input", "link", "hr"}


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._table: str | None = None
        self._row: Row | None = None
        self._cell: str | None = None
        self._cell_text: list[str] = []
        self._open_ids: list[tuple[int, str, list[str]]] = []  # (depth, id, text)
        self._depth = 0
        self._query: str | None = None
        self._in_title = False
        self._in_svg_title = False
        self._svg_depth = 0

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attrs_list}
        self.page.tags.append(tag)
        for key in ("href", "src"):
            if key in attrs:
                self.page.links.append(attrs[key])
        if tag == "svg":
            self._svg_depth += 1
        if tag == "title":
            if self._svg_depth:
                self._in_svg_title = True
            else:
                self._in_title = True
        if tag in VOID:
            return
        self._depth += 1
        if "id" in attrs:
            self.page.ids[attrs["id"]] = attrs
            self._open_ids.append((self._depth, attrs["id"], []))
        if tag == "table" and "id" in attrs:
            self._table = attrs["id"]
            self.page.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = Row(attrs)
            self.page.tables[self._table].append(self._row)
        elif tag == "td" and self._row is not None and "data-field" in attrs:
            self._cell = attrs["data-field"]
            self._row.cell_attrs[self._cell] = attrs
            self._cell_text = []
        elif tag == "li" and "data-query" in attrs:
            self._query = attrs["data-query"]
        elif tag == "code" and self._query is not None:
            self.page.queries[self._query] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = self._in_svg_title = False
        if tag == "svg":
            self._svg_depth -= 1
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.cells[self._cell] = "".join(self._cell_text).strip()
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "li":
            self._query = None
        if self._open_ids and self._open_ids[-1][0] == self._depth:
            _, ident, text = self._open_ids.pop()
            self.page.texts[ident] = " ".join("".join(text).split())
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.page.title += data
        if self._in_svg_title:
            self.page.svg_titles.append(data)
        if self._cell is not None:
            self._cell_text.append(data)
        for _, _, text in self._open_ids:
            text.append(data)
        if self._query is not None and self._query in self.page.queries:
            self.page.queries[self._query] += data


def parse(text: str) -> Page:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    return parser.page
