"""Real `eventgraph serve` processes for tests: start on a free port, wait for /healthz, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from benchmarks._serve import free_port, wait_healthy

REPO_ROOT = Path(__file__).resolve().parent.parent


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class ServeProcess:
    """`python -m service.cli serve` with the given environment, its output in ``log_path``."""

    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port), *args]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, within: float = 180) -> None:
        try:
            wait_healthy(self.url, self.process, within)
        except SystemExit as failed:
            raise AssertionError(f"{failed}:\n{self.output()[-3000:]}") from None

    def terminate(self, stop_signal: int = signal.SIGTERM, within: float = 60) -> int:
        """Sends ``stop_signal``; waits for the exit and returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
        return self.process.wait(within)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


def environment_without_servers(**extra: str) -> dict[str, str]:
    """This process's environment minus DATABASE_URL and REDIS_URL (the embedded defaults)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    return {**env, "PYTHONPATH": str(REPO_ROOT), **extra}
