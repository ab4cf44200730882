"""Render the option tables of docs/cli.md from the typer apps themselves.

Each table sits between ``<!-- options:PROG COMMAND -->`` and ``<!-- /options -->``; this script
rewrites what lies between from the command's parameters, so the reference cannot drift from
``--help``.

    python tools/docs_cli.py          # rewrite docs/cli.md in place
    python tools/docs_cli.py --check  # exit 1 when a table differs from the command

tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"
BLOCK = re.compile(r"(<!-- options:(?P<prog>\w+) (?P<cmd>[\w-]+) -->\n)(?P<body>.*?)(<!-- /options -->)", re.S)


def _commands() -> dict:
    import click
    import typer.main

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from cli.flowkit_app import app as flowkit_app
    from cli.spotnet_app import app as spotnet_app

    out = {}
    for prog, app in (("flowkit", flowkit_app), ("spotnet", spotnet_app)):
        for name, cmd in typer.main.get_command(app).commands.items():
            out[prog, name] = (cmd, click)
    return out


def table(cmd, click) -> str:
    """The usage line and one row per option of a click command."""
    args = " ".join(p.name.upper() for p in cmd.params if isinstance(p, click.Argument))
    lines = [f"`{cmd.name} {args} [OPTIONS]`".replace("  ", " "), "", "| option | default | what |",
             "| --- | --- | --- |"]
    for p in cmd.params:
        if isinstance(p, click.Argument):
            continue
        names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        default = "" if p.default in (None, False, ()) or callable(p.default) else f"`{p.default}`"
        text = " ".join((p.help or "").split()).replace("|", "\\|")
        lines.append(f"| {names} | {default} | {text} |")
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """``text`` with every option table rewritten from its command."""
    commands = _commands()

    def one(match: re.Match) -> str:
        key = (match["prog"], match["cmd"])
        if key not in commands:
            raise KeyError(f"an options block should name a command, got {' '.join(key)!r}")
        return match.group(1) + table(*commands[key]) + match.group(5)

    return BLOCK.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/cli.md differs from the commands")
    args = parser.parse_args(argv)
    text = PAGE.read_text()
    new = render(text)
    if new != text and args.check:
        print("docs/cli.md should match the commands' options, got stale tables", file=sys.stderr)
        return 1
    if new != text:
        PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
