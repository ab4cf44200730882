"""``python -m spotnet``: the ``spotnet`` command line (``softnet_cli.spotnet_app``)."""

from __future__ import annotations

try:
    from softnet_cli.spotnet_app import main
except ModuleNotFoundError as exc:  # a checkout on sys.path without the install: the cli/ folder itself
    if exc.name != "softnet_cli":
        raise
    from cli.spotnet_app import main

if __name__ == "__main__":
    main()
