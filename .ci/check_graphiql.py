"""Check that GraphiQL really renders, offline, in headless Chromium.

    python .ci/check_graphiql.py http://127.0.0.1:PORT/graphql OUTPUT.png

1. the page source references no remote script/stylesheet (CDN) URL;
2. ``chromium --dump-dom`` (after a 10 s virtual-time budget) shows GraphiQL's
   editor markup: ``graphiql-container``, the query editor and CodeMirror;
3. ``chromium --screenshot`` writes a non-trivial PNG.

Exits 1 with a message on the first failure. Needs Debian's chromium
(``apt-get update && apt-get install -y chromium``); set CHROMIUM to override.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]
REQUIRED_MARKUP = {
    "graphiql-container": 'class="graphiql-container',
    "query editor": "graphiql-query-editor",
    "CodeMirror editor": 'class="CodeMirror',
    "headers editor tab": ">Headers<",
}
REMOTE_ASSET = re.compile(
    r"""<(?:script|link)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I
)


class CheckFailed(Exception):
    pass


def chromium_binary() -> str:
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(binary).is_file():
        raise CheckFailed(
            f"chromium not found ({binary}): apt-get update && apt-get install -y chromium"
        )
    return binary


def run_chromium(args: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="check-graphiql-") as profile:
        cmd = [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CheckFailed(f"chromium timed out: {' '.join(cmd)}") from exc


def check_source(url: str) -> None:
    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:
        page = response.read().decode("utf-8", "replace")
    if "graphiql-assets" not in page and "service.assets" in page:
        raise CheckFailed("the page says the assets are missing: run `python -m service.assets`")
    remote = REMOTE_ASSET.search(page)
    if remote:
        raise CheckFailed(f"page loads a remote asset: {remote.group(0)!r}")
    print("ok   page source loads only local assets")


def check_dom(url: str) -> None:
    proc = run_chromium(["--dump-dom", url])
    dom = proc.stdout
    missing = [what for what, needle in REQUIRED_MARKUP.items() if needle not in dom]
    if proc.returncode != 0 or missing:
        lines = [line for line in proc.stderr.splitlines() if "dbus" not in line.lower()]
        tail = "\n".join(lines[-5:])
        if 'id="graphiql"><div class="eg-missing"' in dom:
            tail = "the page could not load /graphiql-assets/*: run `python -m service.assets`"
        raise CheckFailed(
            f"GraphiQL did not render (chromium rc={proc.returncode}, missing: "
            f"{', '.join(missing) or '-'}; DOM {len(dom)} chars)\n{tail}"
        )
    print(f"ok   DOM has {', '.join(REQUIRED_MARKUP)}")


def check_screenshot(url: str, output: Path) -> None:
    output = output.resolve()
    output.unlink(missing_ok=True)
    proc = run_chromium([f"--screenshot={output}", "--window-size=1280,800", url])
    if not output.is_file():
        raise CheckFailed(f"no screenshot written (rc={proc.returncode})\n{proc.stderr[-500:]}")
    data = output.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise CheckFailed(f"{output} is not a PNG")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    # A blank 1280x800 page compresses to ~5 kB; the rendered editor is far larger.
    if len(data) < 20_000:
        raise CheckFailed(f"screenshot {output} is only {len(data)} bytes: page looks blank")
    print(f"ok   screenshot {output} ({width}x{height}, {len(data)} bytes)")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, output = argv[1], Path(argv[2])
    try:
        check_source(url)
        check_dom(url)
        check_screenshot(url, output)
    except (CheckFailed, OSError) as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print("GraphiQL renders offline")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
