"""Tasks of the tracing test: ``jobworker worker --tracing --tasks tests.integration.traced_tasks``.

Importing it configures OpenTelemetry's SDK in the worker process, as an
application's own module would, with an exporter that appends each ended
span to the file named by ``$JOBWORKER_TEST_SPANS``, one JSON object a line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import jobworker as jw


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                line = {
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
                    "attributes": dict(span.attributes or {}),
                }
                out.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS


_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["JOBWORKER_TEST_SPANS"])))
trace.set_tracer_provider(_provider)


@jw.task(name="traced-add", max_retries=0)
def traced_add(a: int, b: int) -> int:
    return a + b
