"""The HTML of `pet report`: one self-contained page (inline CSS, no scripts, images next to it).

Every value that comes from a run is escaped; numbers are printed with ``number`` (4 decimals), so
a test can find a manifest's value in the page by formatting it the same way.
"""

from __future__ import annotations

from html import escape
from typing import Any, Iterable, Sequence

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0 auto;
       max-width: 1240px; padding: 16px 24px 48px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.8em; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { width: 170px; } table.kv td { max-width: 560px; overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 6px 0; }
.note { background: #fff8e1; border-left: 4px solid #f0b429; padding: 6px 12px; margin: 8px 0; }
.legend { color: #555; font-size: 0.88em; }
.side { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; } .side h3 { margin-top: 0; }
.side p.legend { max-width: 360px; }
"""


def number(value: Any) -> str:
    """How the page prints a metric: 4 decimals; a missing value is a dash."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


class Formatted(str):
    """A number the caller has formatted itself (e.g. seconds to 0.01 s): printed as is, aligned as a number."""


def cell(value: Any) -> str:
    if isinstance(value, Formatted):
        return f'<td class="n">{escape(value)}</td>'
    if isinstance(value, (int, float)) or value is None:
        return f'<td class="n">{number(value)}</td>'
    return f"<td>{escape(str(value))}</td>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], css: str = "", row_keys: Sequence[str] | None = None) -> str:
    """An HTML table; ``row_keys`` become each row's ``data-key`` (so tests and readers can find a row)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        key = f' data-key="{escape(row_keys[i])}"' if row_keys else ""
        body.append(f"<tr{key}>" + "".join(cell(v) for v in row) + "</tr>")
    return f'<table class="{css}"><tr>{head}</tr>' + "".join(body) + "</table>"


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of settings; values read as text (left-aligned), floats in their shortest form."""
    text = lambda v: "&ndash;" if v is None else escape(f"{v:g}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{text(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def side_by_side(*blocks: str) -> str:
    """Blocks next to each other where the window is wide enough (wrapping below otherwise)."""
    return '<div class="side">' + "".join(f"<div>{block}</div>" for block in blocks) + "</div>"


def image(name: str | None, alt: str) -> str:
    return f'<img src="{escape(name)}" alt="{escape(alt)}">' if name else ""


def notes(lines: Iterable[str]) -> str:
    return "".join(f'<p class="note">{escape(line)}</p>' for line in lines)


def document(title: str, meta: str, sections: Iterable[tuple[str, str]]) -> str:
    """The whole page: a title, a line under it and (heading, body HTML) sections."""
    body = "".join(f"<h2>{escape(heading)}</h2>\n{html}\n" for heading, html in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>{escape(title)}</h1><p class=\"meta\">{escape(meta)}</p>\n{body}</body></html>\n")
