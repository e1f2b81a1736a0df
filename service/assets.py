"""Fetch the GraphiQL / React UMD bundles from the npm registry into the vendor dir.

    python -m service.assets [--force]

Idempotent: does nothing when every file is already there. Needs ``npm`` on PATH
(only ``npm pack`` is used: no node_modules, no install scripts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from api.graphiql import GRAPHIQL_ASSETS_PATH, VENDOR_FILES


class AssetsError(RuntimeError):
    pass


def _npm_pack(spec: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise AssetsError(
            "npm is not on PATH: install Node.js/npm (e.g. `apt-get install -y npm`) "
            "and run `python -m service.assets` again"
        )
    proc = subprocess.run(
        [npm, "pack", spec, "--json", "--pack-destination", str(dest)],
        cwd=dest,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise AssetsError(f"`npm pack {spec}` failed:\n{proc.stderr.strip()}")
    return dest / json.loads(proc.stdout)[0]["filename"]


def fetch_assets(target: Path = GRAPHIQL_ASSETS_PATH, *, force: bool = False) -> list[Path]:
    """Populate ``target``; returns the files written (empty when nothing was missing)."""
    missing = {n: src for n, src in VENDOR_FILES.items() if force or not (target / n).is_file()}
    if not missing:
        return []
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="eventgraph-assets-") as tmp:
        tarballs: dict[str, Path] = {}
        for name, (spec, member) in missing.items():
            if spec not in tarballs:
                tarballs[spec] = _npm_pack(spec, Path(tmp))
            with tarfile.open(tarballs[spec], "r:gz") as tar:
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise AssetsError(f"{member} not found in {spec}")
                data = extracted.read()
            part = target / f".{name}.part"
            part.write_bytes(data)
            os.replace(part, target / name)  # atomic: a half-written file never looks installed
            written.append(target / name)
    versions = sorted({spec for spec, _ in VENDOR_FILES.values()})
    (target / "VERSIONS.json").write_text(json.dumps(versions, indent=1) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.assets", description=__doc__)
    parser.add_argument("--force", action="store_true", help="fetch again even if present")
    parser.add_argument("--target", type=Path, default=GRAPHIQL_ASSETS_PATH)
    args = parser.parse_args(argv)
    try:
        written = fetch_assets(args.target, force=args.force)
    except AssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if written:
        for path in written:
            print(f"fetched {path} ({path.stat().st_size} bytes)")
    else:
        print(f"GraphiQL assets already present in {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
