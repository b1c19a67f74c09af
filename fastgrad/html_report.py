"""``fastgrad report result.json --html out.html``: one self-contained HTML page of a check.

The page is plain HTML and inline CSS, with the pictures embedded as
base64 PNG data URIs: it opens from a file, offline, in any browser, and can
be mailed or attached to a CI run. It shows the verdict, a summary table
(per tensor: shape, entries checked, failed, inconclusive, worst budget
ratio, hint), one picture per tensor (drawn by :mod:`fastgrad.plot_result`
from the JSON's picture grids) and the worst failing entries. Every text
that comes from the JSON (tensor names, hints, notes, the model) is escaped.

Without matplotlib the page is still written, with a note where the
pictures would be.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import _matplotlib

#: Keys a dict must have to be read as a fastgrad result (``result.to_dict()``).
RESULT_KEYS = ("status", "passed", "n_params", "n_failed", "tensors", "failures")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em 2em;
       color: #1b1b1b; max-width: 1100px; }
header { padding: 0.8em 1.2em; border-radius: 6px; margin-bottom: 1.2em; }
header.failed { background: #fde0dc; border-left: 8px solid #b71c1c; }
header.passed { background: #e3f0fb; border-left: 8px solid #1565c0; }
header.inconclusive { background: #efe3fa; border-left: 8px solid #7b3fb8; }
h1 { margin: 0 0 0.3em 0; font-size: 1.5em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; font-size: 1.2em; }
p.run, footer, p.note { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.5em 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace, monospace; }
tr.failed td.verdict { color: #b71c1c; font-weight: bold; }
tr.inconclusive td.verdict { color: #7b3fb8; font-weight: bold; }
tr.passed td.verdict { color: #1565c0; }
figure { margin: 1em 0 1.8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e0e0e0; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; }
ul.notes li { margin: 0.2em 0; }
span.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle; margin: 0 0.3em 0 0.8em;
              border: 1px solid #888; }
"""


class ReportInputError(ValueError):
    """The JSON given to ``fastgrad report`` cannot be read as a fastgrad result (the message says why)."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def load_document(path: str) -> dict[str, Any]:
    """Read a ``fastgrad check --json`` document (or a bare ``result.to_dict()``) from ``path``.

    Raises
    ------
    ReportInputError
        The file cannot be read, is not JSON, or is not a fastgrad result;
        the message names the file.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh, parse_constant=_no_constants)
    except FileNotFoundError:
        raise ReportInputError(f"{path!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path!r}: cannot read it: {exc}") from None
    except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        raise ReportInputError(f"{path!r} is not valid JSON: {exc}") from None
    result_of(document, path)  # refuse now what is not a result
    return document


def result_of(document: Any, source: str = "the JSON") -> Mapping[str, Any]:
    """The result dict of a document: its ``"result"`` (``fastgrad check --json``) or the document itself."""
    result = document.get("result") if isinstance(document, dict) and "result" in document else document
    if not isinstance(result, dict):
        raise ReportInputError(f"{source!r} is not a fastgrad result: expected a JSON object with a 'result' "
                               f"(from fastgrad check --json) or a result.to_dict(), got {type(result).__name__}")
    missing = [key for key in RESULT_KEYS if key not in result]
    if missing or not isinstance(result["tensors"], list) or not isinstance(result["failures"], list):
        raise ReportInputError(f"{source!r} is not a fastgrad result: "
                               + (f"no {', '.join(map(repr, missing))}" if missing else "'tensors' or 'failures' is "
                                  "not a list") + " (write one with fastgrad check --json FILE)")
    return result


# ------------------------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, spec: str = ".3g") -> str:
    """A number of the JSON in ``spec``; "–" for null (NaN, inf) or a missing one; never raises."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    try:
        return format(value, spec)
    except ValueError:  # a count written as a float by hand: show it as it is
        return _e(value)


def _index(index: Any) -> str:
    if not isinstance(index, list):
        return "?"
    return "(" + ", ".join(map(str, index)) + ("," if len(index) == 1 else "") + ")"


def _table(header: Sequence[str], rows: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """A table; each row is (its class, [(cell class, escaped cell html), ...])."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "\n".join(f'<tr class="{row_class}">' + "".join(f'<td class="{c}">{text}</td>' for c, text in cells)
                     + "</tr>" for row_class, cells in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _tensor_verdict(t: Mapping[str, Any], checked: Any) -> str:
    if not t.get("passed", True):
        return "failed"
    judged = checked if isinstance(checked, int) and checked >= 0 else None
    if judged is not None and 2 * int(t.get("n_inconclusive") or 0) > judged:
        return "inconclusive"
    return "passed"


def _summary_table(result: Mapping[str, Any]) -> str:
    rows = []
    for t in result["tensors"]:
        checked = t.get("n_checked")
        verdict = _tensor_verdict(t, checked)
        shape = " x ".join(map(str, t.get("shape") or [])) or "scalar"
        rows.append((verdict, [
            ("name", f'<a href="#picture-{_e(t.get("name"))}">{_e(t.get("name"))}</a>'),
            ("", _e(shape)),
            ("verdict", _e(verdict.upper() if verdict != "passed" else "ok")),
            ("num", _num(checked, ",d") if isinstance(checked, int) else "–"),
            ("num", _num(t.get("n_failed"), ",d")),
            ("num", _num(t.get("n_inconclusive"), ",d")),
            ("num", _num(t.get("max_budget_ratio"))),
            ("num", _num(t.get("max_rel_error"))),
            ("", _e(_index(t.get("worst_index")))),
            ("hint", _e(t.get("hint") or "")),
        ]))
    return _table(["tensor", "shape", "verdict", "checked", "failed", "inconclusive", "worst x budget",
                   "max rel error", "worst at", "hint"], rows)


def _failures_table(result: Mapping[str, Any]) -> str:
    rows = []
    for f in result["failures"]:
        if not isinstance(f, dict):
            continue
        rows.append(("failed", [
            ("", _e(f"{f.get('tensor')}{_index(f.get('index'))}")),
            ("num", _num(f.get("analytic"), ".9g")),
            ("num", _num(f.get("numerical"), ".9g")),
            ("num", _num(f.get("abs_error"))),
            ("num", _num(f.get("rel_error"))),
            ("num", _num(f.get("budget"))),
            ("num", _num(f.get("budget_ratio"))),
        ]))
    return _table(["entry", "analytic", "numerical", "abs error", "rel error", "budget", "x budget"], rows)


# -------------------------------------------------------------------------------------------- pictures


def _png_data_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pictures(result: Mapping[str, Any]) -> tuple[dict[str, str], str | None, str | None]:
    """One PNG data URI per tensor name and the colour key's; or none, and a note for the page saying why."""
    if "pictures" not in result:
        return {}, None, ("This JSON has no pictures: write it with fastgrad check --json FILE (or "
                    "result.to_dict(pictures=True)) to have them here.")
    try:
        _matplotlib.require_matplotlib("report --html's pictures")
    except ImportError as exc:
        return {}, None, f"No pictures: {exc}. The tables are complete."
    from .picture_grid import grids_from_dict
    from .plot_result import colour_key_figure, figure_of_grids

    try:
        grids = grids_from_dict(result)
    except ValueError as exc:
        raise ReportInputError(f"the JSON's pictures are malformed: {exc}") from None
    uris = {g.name: _png_data_uri(figure_of_grids(grids, [g], purpose="report --html", headline=False, key=False))
            for g in grids.tensors}
    return uris, _png_data_uri(colour_key_figure(grids)), None


def _legend(result: Mapping[str, Any]) -> str:
    pictures = result.get("pictures") or {}
    what = "|a − n| / budget" if pictures.get("what") == "budget_ratio" else "relative error"
    fail_line = pictures.get("fail_line_log10")
    at = (f"{_num(10 ** fail_line, 'g')} x" if pictures.get("what") == "budget_ratio"
          else f"rtol {_num(10 ** fail_line, 'g')}") if isinstance(fail_line, (int, float)) else ""
    line = (f"blue up to the fail line ({at}), red beyond it"
            if isinstance(fail_line, (int, float)) else "pale to red as it grows")
    return (f"<p>Colour: log10 of each entry's {_e(what)}, {_e(line)}. Failing cells are outlined in black "
            f"(and ringed when there are few);"
            f'<span class="swatch" style="background: rgb(148, 66, 219)"></span>inconclusive'
            f'<span class="swatch" style="background: rgb(204, 204, 204)"></span>not checked. '
            f"A large tensor is drawn by blocks, each cell showing the worst entry of its block, so one "
            f"failing entry is never averaged away.</p>")


# ------------------------------------------------------------------------------------------------ page


def build_page(document: Any, source: str = "") -> tuple[str, str | None]:
    """The page of a ``fastgrad check --json`` document (or a bare ``result.to_dict()``), and a note or None.

    The note says why the page has no pictures (no matplotlib, or none in
    the JSON); the page says it too.

    Raises
    ------
    ReportInputError
        ``document`` is not a fastgrad result, or its pictures are malformed.
    """
    from . import __version__

    result = result_of(document, source or "the JSON")
    status = str(result.get("status", "failed"))
    status_class = status if status in ("passed", "failed", "inconclusive") else "failed"
    n_failed, n_params = result.get("n_failed"), result.get("n_params")
    if result.get("verdict") == "tolerance":
        said = (f"{_num(n_failed, ',d')} of {_num(n_params, ',d')} entries out of tolerance "
                f"(rtol {_num(result.get('rtol'), 'g')}, atol {_num(result.get('atol'), 'g')}); "
                f"max rel error {_num(result.get('max_rel_error'))}")
    else:
        said = (f"{_num(n_failed, ',d')} of {_num(n_params, ',d')} entries over their error budget; the worst is "
                f"{_num(result.get('max_budget_ratio'))} x its budget (fails above {_num(result.get('safety'), 'g')} "
                f"x); max rel error {_num(result.get('max_rel_error'))}")
    run = (f"{_e(result.get('model', ''))}, N={_num(result.get('n_samples'), 'd')}, "
           f"loss={_num(result.get('loss'), '.6g')}, "
           f"method={_e(result.get('method', '?'))}, engine={_e(result.get('engine', '?'))}, "
           f"eps={_num(result.get('eps'), 'g')}, {_num(result.get('seconds'))} s")
    remarks = [f"<li><b>note:</b> {_e(n)}</li>" for n in result.get("notes") or []]
    remarks += [f"<li>advice: {_e(a)}</li>" for a in result.get("advice") or []]
    n_inconclusive = result.get("n_inconclusive")
    if isinstance(n_inconclusive, int) and n_inconclusive:
        remarks.append(f"<li>{n_inconclusive:,} checked entries inconclusive, left out of the verdict.</li>")
    pictures, key, note = _pictures(result)
    figures = []
    if key is not None:
        figures.append(f'<figure id="colour-key"><img src="{key}" alt="colour key"></figure>')
    for t in result["tensors"]:
        name = str(t.get("name"))
        if name in pictures:
            figures.append(f'<figure id="picture-{_e(name)}"><img src="{pictures[name]}" '
                           f'alt="{_e(f"picture of {name}: where its mismatch sits")}"></figure>')
    failures = result["failures"]
    failures_html = (f"<p>{len(failures):,} of {_num(n_failed, ',d')} failing entries, worst first.</p>\n"
                     + _failures_table(result)) if failures else "<p>No failing entry.</p>"
    written = result.get("fastgrad_version") or (document.get("fastgrad_version") if isinstance(document, dict)
                                                 else None)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>fastgrad check {_e(status.upper())}{' — ' + _e(source) if source else ''}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f'<header class="{status_class}"><h1>fastgrad check {_e(status.upper())}</h1>',
        f"<p>{_e(said)}</p>",
        f'<p class="run">{run}</p></header>',
        f'<ul class="notes">{"".join(remarks)}</ul>' if remarks else "",
        '<section id="summary"><h2>Tensors</h2>',
        _summary_table(result),
        "</section>",
        '<section id="pictures"><h2>Where the mismatch sits</h2>',
        _legend(result),
        f'<p class="note">{_e(note)}</p>' if note else "",
        "\n".join(figures),
        "</section>",
        '<section id="failures"><h2>Worst failing entries</h2>',
        failures_html,
        "</section>",
        f"<footer><p>Written by fastgrad {_e(__version__)}"
        + (f" from {_e(source)}" if source else "")
        + (f" (the check ran with fastgrad {_e(written)})" if written else "") + ".</p></footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n", note
