"""One self-contained HTML page: inline CSS, images as base64 ``data:`` URIs, no scripts, no external assets.

Example:
    >>> page = render_page("t", [Section("s", tables=[(["a"], [["1"]])])])
    >>> page.startswith("<!DOCTYPE html>") and "<td>1</td>" in page
    True
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

__all__ = ["Section", "png_img", "render_page"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:0.5em 0}
details{margin:0.5em 0;border-top:1px solid #eee;padding-top:0.5em}
summary{cursor:pointer;font-weight:600}
.muted{color:#777;font-size:13px}
"""


@dataclass
class Section:
    """A titled part of the page: paragraphs, tables (header, rows) and PNG images, optionally folded."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)
    folded: bool = False


def png_img(alt: str, png: bytes) -> str:
    """An ``<img>`` tag holding ``png`` inline.

    Example:
        >>> png_img("x", b"abc")
        '<img alt="x" src="data:image/png;base64,YWJj">'
    """
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(section: Section) -> str:
    parts = [f'<p class="muted">{html.escape(p)}</p>' for p in section.paragraphs]
    parts += [_table(h, r) for h, r in section.tables]
    parts += [png_img(alt, png) for alt, png in section.images]
    inner = "\n".join(parts)
    title = html.escape(section.title)
    if section.folded:
        return f"<details><summary>{title}</summary>\n{inner}\n</details>"
    return f"<section><h2>{title}</h2>\n{inner}\n</section>"


def render_page(title: str, sections: list[Section]) -> str:
    """The whole HTML document."""
    body = "\n".join(_section(s) for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )
