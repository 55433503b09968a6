"""The benchmarks still run against the current schema and code (at the smallest sizes; the
figures are not checked here, bench/README.md reports them). A bench that no longer runs makes
every performance claim of bench/README.md unverifiable, so its breakage fails the suite."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.environ.get("AFTERSALES_TEST_DATABASE", "sqlite") != "sqlite",
    reason="the benches make their own SQLite databases; checked once, on the SQLite pass",
)


@pytest.mark.parametrize("script, arguments, prints", [
    ("actions.py", ["--no-http", "--cases", "2", "--rounds", "1", "--warmup", "1"], "service_vs_bare_ratio:"),
    ("sweep.py", ["--cases", "30", "--small", "10"], "sweep_vs_bare_batch_ratio:"),
    ("queue.py", ["--small", "30", "--large", "60", "--repeat", "1", "--warmup", "0"],
     "seller_case_page_2000_vs_0_events_ratio:"),
    ("deliver.py", ["--cases", "3"], "every message delivered exactly once: yes"),
])
def test_the_bench_runs(script, arguments, prints, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AFTERSALES_")}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *arguments], capture_output=True, text=True,
                            timeout=600, cwd=ROOT, env=env)
    assert prints in result.stdout, f"bench/{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
