"""Run the ``jobworker`` command as ``python -m jobworker``, as in ``python -m jobworker demo``."""

from .cli import main

raise SystemExit(main())
