"""Run one workload of one system in this fresh process; write its figures as JSON.

``run.py`` starts this script once per system, workload and repetition, with
the config as JSON on stdin, and reads the result from the file the config
names. Not meant to be run by hand.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time
import traceback
from typing import Any

from _services import services
from _systems import SYSTEMS


def run(config: dict[str, Any]) -> dict[str, Any]:
    system = SYSTEMS[config["system"]]
    workload = config["workload"]
    sizes = config["sizes"]
    cls = getattr(importlib.import_module(system.module), system.cls)
    with services(config["dsn"], config["redis_url"]) as s:
        impl = cls(s)
        gc.collect()
        t0 = time.perf_counter()
        if workload in ("drain1", "drain4"):
            out = impl.drain(sizes["drain_jobs"], int(workload[-1]))
        elif workload == "drain2p":
            out = impl.drain_processes(sizes["drain_jobs"], 2)
        elif workload == "latency":
            out = impl.latency(sizes["latency_samples"], sizes["latency_budget"])
        elif workload == "memory":
            out = impl.memory(sizes["memory_jobs"])
        elif workload == "claims":
            out = impl.claims(sizes["claim_backlogs"], sizes["claim_count"])
        else:
            raise ValueError(f"unknown workload {workload!r}")
        out["seconds"] = time.perf_counter() - t0
        close = getattr(impl, "close", None)
        if close is not None:
            close()
    return out


def main() -> int:
    config = json.load(sys.stdin)
    try:
        result: dict[str, Any] = {"ok": True, **run(config)}
    except Exception as exc:  # broad: any failure is reported to the parent, not raised
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    with open(config["result_path"], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
