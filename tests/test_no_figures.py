"""Code says what and why, not how fast: no measured figures in flowkit/, spotnet/, cli/ or --help.

Figures live in benchmarks/results/*.json and the docs pages generated from them
(CONTRIBUTING.md, "Where things go"). The patterns catch rates, durations, bandwidths, bytes per
pixel, named GPUs and the names of result files; ALLOWED lists what matches them and is not a
measurement.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(
    r"\d[\d,.]*\s*(?:pairs|windows|frames)/s\b"          # rates
    r"|\d[\d,.]*\s*(?:ns|us|ms)\b(?!\w)"                   # durations of a measurement
    r"|\d[\d,.]*\s*[GT]B/s\b|\bB/px\b|\d\s*B per pixel"    # bandwidth, bytes per pixel
    r"|\b(?:[HAVLB]100|H200|H20|A10G|A6000|RTX\s?\d{4})\b"  # named GPUs
    r"|\b\w+_(?:h100|h200|cpu|2core|xeon|sm90)\w*\.(?:json|log)\b"  # result files of runs
    r"|\d[\d.]*\s*(?:x|%)\s+(?:faster|slower)\b|\bstop[ -]\d+\b",
    re.I,
)
#: (file, matched text) pairs that are not measurements.
ALLOWED: set[tuple[str, str]] = set()


def _sources() -> list[Path]:
    return sorted(p for d in ("flowkit", "spotnet", "cli") for p in (ROOT / d).rglob("*.py"))


def test_the_pattern_catches_figures():
    for text in ("2,579 pairs/s", "293 ns per pair-iteration", "131 ms", "3.6 TB/s", "615 B/px", "on an H100",
                 "gpu_check_h200.json", "about 7x faster", "stop " + "19"):
        assert FIGURE.search(text), text
    for text in ("{self.pairs_per_s:.2f} pairs/s", "frames/s in", "SPEC 2", "k = 18", "(64, 2, 128, 128)"):
        assert not FIGURE.search(text), text


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_figures_in_library_code(path):
    rel = str(path.relative_to(ROOT))
    hits = [(n, m.group(0)) for n, line in enumerate(path.read_text().splitlines(), 1)
            for m in FIGURE.finditer(line) if (rel, m.group(0)) not in ALLOWED]
    assert not hits, f"{rel} should say what and why, not how fast; got figures at lines {hits}"


def test_no_figures_in_cli_help():
    import click
    import typer.main

    from cli.flowkit_app import app as flowkit_app
    from cli.spotnet_app import app as spotnet_app

    for app in (flowkit_app, spotnet_app):
        group = typer.main.get_command(app)
        texts = [group.help or ""]
        for cmd in group.commands.values():
            texts.append(cmd.help or "")
            texts += [p.help or "" for p in cmd.params if isinstance(p, click.Option)]
        hits = [m.group(0) for text in texts for m in FIGURE.finditer(" ".join(text.split()))]
        assert not hits, f"--help should not quote measurements, got {hits}"
