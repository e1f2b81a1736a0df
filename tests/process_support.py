"""Helpers for tests of `eventgraph serve` processes (started with service.serving.ServeProcess)."""

from __future__ import annotations

import os
from pathlib import Path

from service.serving import ServeProcess

__all__ = ["ServeProcess", "environment_without_servers", "pid_alive"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def environment_without_servers(**extra: str) -> dict[str, str]:
    """This process's environment minus DATABASE_URL and REDIS_URL (the embedded defaults)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    return {**env, "PYTHONPATH": str(REPO_ROOT), **extra}
