"""Run the ``jobworker`` command: ``python -m jobworker demo``."""

from .cli import main

raise SystemExit(main())
