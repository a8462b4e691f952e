"""The verify report as a document, and its rendering as one self-contained HTML page.

:func:`optodesign.verify.report.report_blocks` builds the report once as a list of blocks
(:class:`Heading`, :class:`Para`, :class:`Table`, :class:`Bullets`, :class:`Figures`);
``report.md`` and ``report.html`` are two renderings of that list, so they say the same.
Inside a block's text, ``**bold**`` and ```code``` are the only markup.

``report.html`` is meant to be mailed or attached as it is: the figures are embedded as
``data:`` URIs, the style is inline, and the page has no script and loads nothing else (a
Content-Security-Policy forbids it: images from ``data:`` only, no scripts, no fetches).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from html import escape
from typing import NamedTuple

__all__ = ["Block", "Bullets", "Figures", "Heading", "Para", "Table", "CSP", "render_html"]


class Heading(NamedTuple):
    level: int
    text: str


class Para(NamedTuple):
    """One paragraph; Markdown writes each line on its own line (one flowing paragraph)."""

    lines: tuple[str, ...]


class Table(NamedTuple):
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


class Bullets(NamedTuple):
    items: tuple[str, ...]


class Figures(NamedTuple):
    """PNG files of the report directory, ``(name, caption)`` each."""

    items: tuple[tuple[str, str], ...]


Block = Heading | Para | Table | Bullets | Figures

#: what the page may load: its own inline style and ``data:`` images, nothing else
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1b1b1b; background: #fff; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 1.2em 3em; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.6em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { font: 0.92em ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
       background: #f3f3f3; padding: 0 0.2em; }
strong.pass { color: #fff; background: #1e7d32; padding: 0 0.35em; border-radius: 3px; }
strong.fail { color: #fff; background: #b3261e; padding: 0 0.35em; border-radius: 3px; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
"""

_PASS = {"PASS", "passed"}
_FAIL = {"FAIL", "FAILED", "BEYOND"}


def _inline(text: str) -> str:
    """Escaped text with ``**bold**`` and ```code``` as HTML; the verdict words coloured."""
    def bold(m: re.Match[str]) -> str:
        word = m.group(1)
        cls = " class=\"pass\"" if word in _PASS else " class=\"fail\"" if word in _FAIL else ""
        return f"<strong{cls}>{word}</strong>"

    out = escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", bold, out)


def _table(t: Table) -> list[str]:
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in t.header)
           + "</tr></thead>", "<tbody>"]
    out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
            for row in t.rows]
    return [*out, "</tbody>", "</table>"]


def _figures(f: Figures, image: Callable[[str], bytes]) -> list[str]:
    out = []
    for name, caption in f.items:
        data = base64.b64encode(image(name)).decode("ascii")
        alt = escape(f"{name}: {caption}" if caption else name)
        cap = escape(name) + (f": {escape(caption, quote=False)}" if caption else "")
        out.append(f'<figure id="{escape(name)}"><img src="data:image/png;base64,{data}" '
                   f'alt="{alt}"><figcaption>{cap}</figcaption></figure>')
    return out


def render_html(blocks: list[Block], image: Callable[[str], bytes]) -> str:
    """One self-contained HTML page of ``blocks``; ``image(name)`` gives a figure's PNG
    bytes, embedded as a ``data:`` URI."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "Verify report")
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append("<p>" + " ".join(_inline(x) for x in b.lines) + "</p>")
        elif isinstance(b, Table):
            body += _table(b)
        elif isinstance(b, Bullets):
            body += ["<ul>", *(f"<li>{_inline(x)}</li>" for x in b.items), "</ul>"]
        elif isinstance(b, Figures):
            body += _figures(b, image)
        else:  # pragma: no cover - a new block type needs a rendering here
            raise TypeError(f"unknown report block {type(b).__name__}")
    head = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title, quote=False)}</title>",
            f"<style>{_STYLE}</style>", "</head>", "<body>", "<main>"]
    return "\n".join([*head, *body, "</main>", "</body>", "</html>"]) + "\n"
