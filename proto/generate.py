"""Regenerate agentp2p/pb/*_pb2.py from the schemas in proto/.

The .proto files are the specification of our wire protocols; the Python
modules in agentp2p/pb are generated from them and committed, so that users
do not need protoc. ``tests/test_proto_generated.py`` fails when the
committed code is stale.

Usage:  python proto/generate.py            # rewrite agentp2p/pb
        python proto/generate.py --check    # exit 1 if anything differs

Each schema must be self-contained (no imports between our .proto files):
protoc emits top-level ``import x_pb2`` statements that would not resolve
inside our package.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
OUT_DIR = PROTO_DIR.parent / "agentp2p" / "pb"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) over every schema into ``out_dir``."""
    from grpc_tools import protoc  # test/dev dependency only

    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        return []
    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}"]
    args += [str(p) for p in protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(out_dir.glob("*_pb2.py"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
    committed = {p.name: p.read_bytes() for p in OUT_DIR.glob("*_pb2.py")}
    if ns.check:
        stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
        for name in stale:
            print(f"stale: agentp2p/pb/{name}", file=sys.stderr)
        return 1 if stale else 0
    for name in committed.keys() - fresh.keys():
        (OUT_DIR / name).unlink()
    for name, data in fresh.items():
        (OUT_DIR / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
