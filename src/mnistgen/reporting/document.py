"""The document writer: a report's blocks as markdown and as one self-contained HTML page (images
inline), written with the results.json beside them."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..fileio import atomic_write_text


def render(blocks: list[tuple], out: Path) -> tuple[str, str]:
    """Blocks -> (markdown, html). Kinds: ("h1"|"h2"|"h3", text), ("p", text), ("ul", [items]),
    ("table", header, rows), ("img", path, caption)."""
    md, body = [], []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            md.append("#" * int(kind[1]) + " " + rest[0])
            body.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            md.append(rest[0])
            body.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "ul":
            md.extend(f"- {item}" for item in rest[0])
            body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            header, rows = rest
            md.append("| " + " | ".join(header) + " |")
            md.append("|" + "---|" * len(header))
            md.extend("| " + " | ".join(row) + " |" for row in rows)
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                                  for row in rows) + "</table>")
        elif kind == "img":
            path, caption = rest
            md.append(f"![{caption}]({Path(path).relative_to(out).as_posix()})")
            data = base64.b64encode(Path(path).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        md.append("")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}figcaption{color:#555;font-size:13px}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>mnistgen report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return "\n".join(md), page


def write_documents(out: Path, blocks: list[tuple], records: list[dict]) -> None:
    """report.md, report.html (from ``blocks``) and results.json (``records``, one per run) in ``out``."""
    md, page = render(blocks, out)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "results.json", json.dumps(records, indent=2) + "\n")
