"""``python -m flowkit``: the ``flowkit`` command line (``softnet_cli.flowkit_app``)."""

from __future__ import annotations

try:
    from softnet_cli.flowkit_app import main
except ModuleNotFoundError as exc:  # a checkout on sys.path without the install: the cli/ folder itself
    if exc.name != "softnet_cli":
        raise
    from cli.flowkit_app import main

if __name__ == "__main__":
    main()
