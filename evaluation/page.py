"""The HTML pages of results (reports, summaries, comparisons): one look, tables a reader can sort, written atomically.

A page opens from disk: every picture is a PNG beside it. Tables are sorted when written (worst
first) and read as they are; a small inline script lets a click on a column's header sort by it.
"""
from __future__ import annotations

import csv
import html
import os

from utils.files import atomic_write

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222;
line-height:1.4}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f4f4f4;white-space:nowrap}
table.sortable th{cursor:pointer}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}img{max-width:100%}h2{margin-top:2em}.muted{color:#666}
.better{color:#1a7f37}.worse{color:#c62828}figure{margin:.5em 0}figcaption{color:#555;font-size:.9em}"""

# Click a header to sort its table by that column (numbers as numbers); a second click reverses.
SORT_SCRIPT = """document.querySelectorAll('table.sortable').forEach(t => {
  t.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
    const up = th.getAttribute('aria-sort') !== 'ascending';
    t.querySelectorAll('th').forEach(h => h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
    const rows = Array.from(t.tBodies[0].rows), key = r => r.cells[col].textContent;
    const num = rows.every(r => key(r) === '' || !isNaN(parseFloat(key(r))));
    rows.sort((a, b) => num ? (parseFloat(key(a)) - parseFloat(key(b))) : key(a).localeCompare(key(b)));
    if (!up) rows.reverse();
    rows.forEach(r => t.tBodies[0].appendChild(r));
  }));
});"""


def cell(column: str, value: str) -> str:
    """A CSV value as pages show it: figures ×100 to one decimal (as papers report), MAE as is, counts whole."""
    try:
        number = float(value)
    except ValueError:
        return html.escape(value)
    if column in ("Frames", "Videos", "videos", "Frame"):
        return str(int(number))
    return f"{number:.3f}" if column == "MAE" else f"{100 * number:.1f}"


def table(columns: list[str], rows: list[dict[str, str]], table_id: str, show=cell) -> str:
    """A sortable table; `show(column, value)` formats each cell (HTML)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{show(c, r[c])}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def link(target: str, page_path: str, text: str) -> str:
    """A link from the page at `page_path` to `target`, relative, so the folder can move."""
    return f'<a href="{html.escape(os.path.relpath(target, os.path.dirname(page_path)))}">{html.escape(text)}</a>'


def read_csv(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a CSV scoring wrote."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_page(path: str, title: str, parts: list[str]) -> str:
    """The page at `path` (atomically), its parts in order; returns `path`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
                        f"content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
                        f"<style>{STYLE}</style></head><body>{''.join(parts)}<script>{SORT_SCRIPT}</script>"
                        f"</body></html>\n").encode("utf-8"))
    return path
