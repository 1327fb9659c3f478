"""Telemetry for operators: Prometheus metrics and OpenTelemetry traces.

Each lives in its own module, which imports its optional library at the
top: :mod:`jobworker.metrics.prometheus` (the ``prometheus`` extra) and
:mod:`jobworker.metrics.tracing` (the ``otel`` extra). Importing this
package imports neither, and nothing in jobworker imports them unless asked
to (``jobworker worker --metrics-port``, ``--tracing``).
"""
