"""jobworker in a Flask app: ``pip install 'jobworker[flask]'``.

:class:`FlaskJobworker` reads the ``JOBWORKER_*`` keys of ``app.config``,
keeps one queue per app in ``app.extensions["jobworker"]``, runs every job
inside an app context, starts the app's workers in threads (on the first
request with ``JOBWORKER_START_WORKERS``, or when asked) and stops them at
exit, and adds the ``flask jobworker`` commands. See the Flask how-to in the
documentation.
"""

from ._config import ConfigurationError
from ._context import AppContextMixin, with_app_context
from ._extension import FlaskJobworker

__all__ = ["AppContextMixin", "ConfigurationError", "FlaskJobworker", "with_app_context"]

# Documented and shown in tracebacks under this module, where users import them.
for _public in (AppContextMixin, ConfigurationError, FlaskJobworker, with_app_context):
    _public.__module__ = __name__
del _public
