"""Integrations with frameworks: :mod:`jobworker.contrib.django` and :mod:`jobworker.contrib.flask`.

Each needs its framework installed (``pip install 'jobworker[django]'`` or
``'jobworker[flask]'``); importing this package needs nothing.
"""
