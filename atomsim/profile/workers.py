"""The worker processes the profiler measures in: a fork server that never held a module
(`python -m atomsim.profile.worker serve`, see worker.py), or a fresh interpreter per job."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from ..errors import ProfileError
from ..process import measurement_env


class Workers:
    """A fork server (default) or a fresh `python -m atomsim.profile.worker run` per job."""

    def __init__(self, fresh: bool = False, env: dict | None = None):
        self.fresh = fresh or not hasattr(os, "fork")
        # the settings of a measuring process in the environment, as glibc reads them at start
        # (atomsim/process.py; the worker also pins them itself)
        self.env = measurement_env(dict(os.environ, **(env or {})))
        self.env.setdefault("PYTHONWARNINGS", "ignore")
        self.proc = None
        self.log = tempfile.TemporaryFile(mode="w+")

    def __enter__(self):
        if not self.fresh:
            self.proc = subprocess.Popen([sys.executable, "-m", "atomsim.profile.worker", "serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                         text=True, env=self.env, start_new_session=True)
            try:
                line = self.proc.stdout.readline()
                if not line.strip().startswith('{"ready"'):
                    raise ProfileError(f"profile worker failed to start: {self._tail()}")
            except BaseException as e:   # Ctrl-C while it starts: `with` calls no __exit__, stop it here
                self.__exit__(type(e), e, e.__traceback__)
                raise
        return self

    def __exit__(self, exc_type, *exc):
        if self.proc is not None and exc_type is not None:
            # interrupted or failed: stop the server and the child measuring now (their own group)
            import signal
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        elif self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def _tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:]

    def run(self, job: dict, fresh: bool = False) -> dict:
        """Run one job; `fresh` forces a new interpreter for it (a forked child's RSS misses the
        shared-library pages its parent faulted in, so absolute RSS figures need a new process)."""
        if self.fresh or fresh:
            p = subprocess.run([sys.executable, "-m", "atomsim.profile.worker", "run", json.dumps(job)],
                               stdout=subprocess.PIPE, stderr=self.log, text=True, env=self.env, check=False)
            line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        else:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise ProfileError(f"profile worker died on {job.get('mode')} job: {self._tail()}")
        r = json.loads(line)
        if not r.get("ok"):
            what = "/".join(str(job.get(k)) for k in ("model", "quant") if job.get(k))
            raise ProfileError(f"measuring {job['mode']} {what} failed: {r.get('error')}\n{r.get('traceback', '')}")
        return r["result"]
