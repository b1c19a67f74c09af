"""fastgrad report RESULT.json --html and fastgrad check --plot (issue 17).

The page is parsed (html.parser) for its tables, its embedded pictures and
any network reference, then opened in a real headless browser (Chromium from
the system packages) and its screenshot read back.
"""

from __future__ import annotations

import base64
import html.parser
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import test_mutations as tm

import fastgrad
from fastgrad import cli

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = "/usr/bin/chromium"


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = "".join(line for line in captured.err.splitlines(keepends=True) if not line.startswith("fastgrad: compiling"))
    return code, captured.out, err


class Page(html.parser.HTMLParser):
    """Tables (rows of cell texts, per table id of the enclosing section), images, every attribute value."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict[str, str]] = []
        self.attributes: list[str] = []
        self.text: list[str] = []
        self._section = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.attributes += [v for v in attrs.values() if v]
        if tag == "section":
            self._section = attrs.get("id")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables.setdefault(self._section, []).append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(text):
    page = Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def failing():
    """The mutation suite's dropped column (loop skips the last unit) on the tutorial's 4-5-3 net."""
    (m,) = [m for m in tm.MUTATIONS if m.id == "loop-skips-last-unit"]
    net, params, X, Y, grads = tm._grads(m)
    return net, params, X, Y, grads, fastgrad.check(net, params, X, Y, grads)


@pytest.fixture
def page_of_failing(failing, tmp_path, capsys):
    result = failing[-1]
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"fastgrad_version": fastgrad.__version__, "result": result.to_dict(pictures=True)},
                               allow_nan=False))
    out = tmp_path / "report.html"
    code, stdout, err = run(["report", path, "--html", out], capsys)
    assert code == 0, err
    assert err == "" and stdout.startswith(f"wrote {out}")
    return result, out


def test_page_has_the_summary_the_failures_and_the_pictures_and_nothing_from_the_network(page_of_failing):
    result, out = page_of_failing
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    header, *rows = page.tables["summary"]
    assert header[:6] == ["tensor", "shape", "verdict", "checked", "failed", "inconclusive"]
    assert [r[0] for r in rows] == ["W1", "b1", "W2", "b2"]
    assert [r[2] for r in rows] == ["FAILED"] * 4
    assert [r[4] for r in rows] == [str(t.n_failed) for t in result.tensors] == ["4", "1", "5", "1"]
    assert [r[3] for r in rows] == ["20", "5", "15", "3"]
    assert rows[0][-1] == "only column 4 of W1 is wrong" and rows[3][-1] == "only entry (2,) of b2 is wrong"
    header, *failures = page.tables["failures"]
    assert header[0] == "entry" and len(failures) == result.n_failed == 11
    worst = result.failures[0]
    assert failures[0][0] == f"{worst.tensor}{worst.index}"
    assert float(failures[0][1]) == pytest.approx(worst.analytic, rel=1e-8, abs=1e-12)
    # five pictures: the colour key and one per tensor, PNGs embedded as data URIs
    assert len(page.images) == 5
    for image in page.images:
        assert image["src"].startswith("data:image/png;base64,") and image["alt"]
        data = base64.b64decode(image["src"].split(",", 1)[1])
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
    # self-contained: no network reference anywhere, no external resource
    assert "http://" not in text and "https://" not in text
    assert not [a for a in page.attributes if a.startswith(("//", "ftp:"))]
    assert "<script" not in text and "<link" not in text
    assert "FAILED" in "".join(page.text[:20])


def test_page_in_a_headless_browser(page_of_failing, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the page's parse is tested above")
    import matplotlib.image

    result, out = page_of_failing
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
         out.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG_MAGIC)
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (2000, 1200)
    rgb = (pixels[..., :3] * 255).astype(int)
    red = (rgb[..., 0] > 110) & (rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2]) > 60)
    # a solid red block of 40 x 40 pixels: a heatmap's failing stripe (the header's red border is 8 pixels
    # wide, the verdicts are text), found with the counts of red pixels in every 40 x 40 window
    counts = np.pad(red.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    windows = counts[40:, 40:] - counts[:-40, 40:] - counts[40:, :-40] + counts[:-40, :-40]
    assert windows.max() == 40 * 40
    assert len(np.unique(rgb.reshape(-1, 3) // 8, axis=0)) > 50  # a rendered page, not a blank one


def test_check_json_then_report_end_to_end(failing, tmp_path, capsys):
    net, params, X, Y, grads, _ = failing
    np.savez(tmp_path / "params.npz", **dict(zip(net.tensor_names, params)))
    np.savez(tmp_path / "data.npz", X=X, Y=Y)
    np.savez(tmp_path / "grads.npz", **dict(zip(net.tensor_names, grads)))
    code, out, err = run(["check", "--params", tmp_path / "params.npz", "--data", tmp_path / "data.npz",
                          "--grads", tmp_path / "grads.npz", "--json", tmp_path / "r.json",
                          "--plot", tmp_path / "r.png"], capsys)
    assert code == 1, err  # the check failed
    assert (tmp_path / "r.png").read_bytes().startswith(PNG_MAGIC)
    document = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    pictures = document["result"]["pictures"]
    assert [t["name"] for t in pictures["tensors"]] == ["W1", "b1", "W2", "b2"]
    assert pictures["tensors"][0]["cells"] == [4, 5]
    code, out, err = run(["report", tmp_path / "r.json", "--html", tmp_path / "r.html"], capsys)
    assert code == 0, err
    page = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert len(page.images) == 5 and "only column 4 of W1 is wrong" in "".join(page.text)
    code, out, err = run(["report", tmp_path / "r.json", "--html", "-"], capsys)
    assert code == 0 and out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")


def test_check_plot_writes_a_png(tmp_path, capsys):
    code, out, err = run(["check", "--sizes", "6,5,3", "--batch", 4, "--plot", tmp_path / "out.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "out.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("argv, mentions", [
    (["--plot", "{tmp}/nowhere/out.png"], "--plot"),
    (["--plot", "{tmp}/out.xyz"], "unknown picture format 'xyz'"),
])
def test_check_plot_refusals_come_before_the_check(argv, mentions, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, out, err = run(["check", "--sizes", "6,5,3"] + argv, capsys)
    assert code == 2 and out == "", (out, err)  # refused before the check ran (nothing printed)
    assert err.startswith("fastgrad: error: ") and err.count("\n") == 1 and mentions in err


def test_without_matplotlib_check_plot_exits_2_and_report_writes_tables_only(failing, tmp_path, capsys,
                                                                            monkeypatch):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"result": failing[-1].to_dict(pictures=True)}, allow_nan=False))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(["check", "--sizes", "6,5,3", "--plot", tmp_path / "out.png"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--plot needs matplotlib" in err and "fastgrad[plot]" in err
    assert not (tmp_path / "out.png").exists()
    code, out, err = run(["report", path, "--html", tmp_path / "r.html"], capsys)
    assert code == 0
    assert "fastgrad: note: No pictures" in err and "fastgrad[plot]" in err
    page = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert page.images == [] and len(page.tables["summary"]) == 5
    assert "fastgrad[plot]" in "".join(page.text)


def test_report_refusals_name_the_file(tmp_path, capsys, failing):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text('{"result": {"status": "passed"}}')
    (tmp_path / "nan.json").write_text('{"result": NaN}')
    document = {"result": failing[-1].to_dict(pictures=True)}
    document["result"]["pictures"]["tensors"][0]["flags"] = "AAAA"  # 3 cells where 20 are due
    (tmp_path / "cut.json").write_text(json.dumps(document))
    document["result"]["pictures"]["tensors"][0]["block"] = [0, 1]
    (tmp_path / "block.json").write_text(json.dumps(document))
    shape = json.loads(json.dumps(document))
    shape["result"]["pictures"]["tensors"][0]["shape"] = [5, 5]  # a fresh user's finding: accepted before
    (tmp_path / "shape.json").write_text(json.dumps(shape))
    document["result"]["pictures"] = {"what": "budget_ratio", "fail_line_log10": "high", "tensors": []}
    (tmp_path / "line.json").write_text(json.dumps(document))
    cases = {
        "missing.json": "'{tmp}/missing.json': no such file",
        "bad.json": "bad.json' is not valid JSON",
        "list.json": "is not a fastgrad result",
        "other.json": "is not a fastgrad result: no 'passed', 'n_params'",
        "nan.json": "is not valid JSON: non-standard JSON constant NaN",
        "cut.json": "pictures.tensors[0].flags holds 3 cells, its 'cells' says 4 x 5",
        "block.json": "pictures.tensors[0]: 4 x 5 cells do not cover 4 x 5 entries in blocks of 0 x 1",
        "shape.json": "pictures.tensors[0]: a 4 x 5 view does not hold a tensor of shape [5, 5]",
        "line.json": "the JSON's pictures are malformed: could not convert string to float",
    }
    for name, message in cases.items():
        code, out, err = run(["report", tmp_path / name, "--html", tmp_path / "out.html"], capsys)
        assert code == 2, name
        assert err.startswith("fastgrad: error: ") and err.count("\n") == 1, err
        assert message.format(tmp=tmp_path) in err, (name, err)
    assert not (tmp_path / "out.html").exists()
    code, out, err = run(["report", tmp_path / "cut.json"], capsys)
    assert code == 2 and "--html" in err  # required
    document = {"result": failing[-1].to_dict()}  # no pictures: the page says how to get them
    (tmp_path / "plain.json").write_text(json.dumps(document))
    code, out, err = run(["report", tmp_path / "plain.json", "--html", tmp_path / "nowhere" / "p.html"], capsys)
    assert code == 2 and "no such directory" in err
    code, out, err = run(["report", tmp_path / "plain.json", "--html", tmp_path / "p.html"], capsys)
    assert code == 0 and "This JSON has no pictures" in err
    assert "result.to_dict(pictures=True)" in (tmp_path / "p.html").read_text()


def test_every_text_from_the_json_is_escaped(tmp_path, capsys):
    rng = np.random.default_rng(0)
    W, x, y = rng.standard_normal((3, 2)), rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    name = '<script>alert("W")</script>&'

    def f(params, x, y):
        return 0.5 * np.sum((x @ params[name] - y) ** 2)

    wrong = {name: x.T @ (x @ W - y) * 1.5}
    result = fastgrad.check_function(f, {name: W}, wrong, args=(x, y))
    assert not result.passed
    (tmp_path / "r.json").write_text(json.dumps({"result": result.to_dict(pictures=True)}, allow_nan=False))
    code, out, err = run(["report", tmp_path / "r.json", "--html", "-"], capsys)
    assert code == 0, err
    assert "<script>" not in out and "&lt;script&gt;alert(&quot;W&quot;)&lt;/script&gt;&amp;" in out
    page = parse(out)
    assert page.tables["summary"][1][0] == name  # the browser shows the name as it is
