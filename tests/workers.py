"""Run several worker processes of one test and collect each one's ``RESULT {json}`` line."""

import json
import subprocess
import sys


def run_workers(script, argv_per_worker, env, tmp_path, timeout=120):
    """Start ``python script *argv`` for each argv at once; return their parsed RESULT lines.

    Outputs go to files, not pipes: a worker blocked on a full pipe would stall the others in
    their next collective (or JAX's shutdown barrier).
    """
    logs = [(open(tmp_path / f"out{i}.txt", "w"), open(tmp_path / f"err{i}.txt", "w"))
            for i in range(len(argv_per_worker))]
    procs = [subprocess.Popen([sys.executable, script, *argv], stdout=out, stderr=err,
                              text=True, env=env)
             for argv, (out, err) in zip(argv_per_worker, logs)]
    results = []
    try:
        for i, proc in enumerate(procs):
            proc.wait(timeout=timeout)
            out = (tmp_path / f"out{i}.txt").read_text()
            err = (tmp_path / f"err{i}.txt").read_text()
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            assert proc.returncode == 0 and lines, err[-3000:]
            results.append(json.loads(lines[-1][len("RESULT "):]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for out, err in logs:
            out.close()
            err.close()
    return results
