"""Property-based fuzzing of the running service for a time budget: schemathesis, every check,
every operation of the OpenAPI document, then the prediction log searched for 500s.

    python benchmarks/fuzz_serving.py                  # 600 s on the project's last `kedro run`
    python benchmarks/fuzz_serving.py --seconds 60 --project-path /path/to/project --env tiny

The service runs on a sandbox of the project (bench_serving.py's: links to its artifacts, its
own empty prediction log and incoming/ folder), so fuzz traffic reaches neither the A/B log nor
the next run's training data. Prints the cases run, the failures by kind and the 500s.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_serving import KEY, ROOT, sandbox, wait_until_up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=600, help="schemathesis --max-time")
    ap.add_argument("--project-path", type=Path, default=ROOT)
    ap.add_argument("--env", default=None)
    ap.add_argument("--port", type=int, default=8798)
    ap.add_argument("--seed", type=int, default=20261202)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = sandbox(args.project_path.resolve(), Path(tmp) / "project")
        cmd = [sys.executable, "-m", "pozytywka", "serve", "--port", str(args.port)]
        cmd += ["--project-path", str(project)] + (["--env", args.env] if args.env else [])
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "POZYTYWKA_API_KEY": KEY}
        server = subprocess.Popen(
            cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        url = f"http://127.0.0.1:{args.port}"
        try:
            wait_until_up(url, server)
            fuzz = subprocess.run(
                [
                    str(Path(sys.executable).with_name("schemathesis")),
                    "run",
                    f"{url}/openapi.json",
                    "--checks",
                    "all",
                    "--max-time",
                    str(args.seconds),
                    "--max-examples",
                    "1000000",
                    "--seed",
                    str(args.seed),
                    "--no-shrink",
                    "--header",
                    f"X-API-Key: {KEY}",
                ],
                capture_output=True,
                check=False,
                text=True,
                cwd=tmp,
            )
        finally:
            server.terminate()
            server.wait(30)
        report(fuzz, project / "data" / "07_model_output" / "prediction_log.sqlite")
    sys.exit(fuzz.returncode)


def report(fuzz: subprocess.CompletedProcess, log: Path) -> None:
    summary = fuzz.stdout[fuzz.stdout.rfind("SUMMARY") :] if "SUMMARY" in fuzz.stdout else ""
    print(summary or fuzz.stdout[-4000:] + fuzz.stderr[-2000:])
    cases = re.search(r"(\d+) generated", summary)
    with sqlite3.connect(log) as db:
        logged, errors = db.execute(
            "SELECT COUNT(*), SUM(status >= 500) FROM predictions"
        ).fetchone()
    print(
        f"cases generated: {cases.group(1) if cases else '?'}; schemathesis exit "
        f"{fuzz.returncode}; prediction-log rows {logged:,}, of which status >= 500: "
        f"{errors or 0}"
    )


if __name__ == "__main__":
    main()
