"""The protobuf schemas in proto/ are the spec: committed code must match them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_matches_schemas() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        "agentp2p/pb is out of date with proto/; run `python proto/generate.py`\n"
        + result.stderr
    )


def test_every_schema_has_generated_module() -> None:
    schemas = {p.stem for p in (ROOT / "proto").glob("*.proto")}
    modules = {p.name.removesuffix("_pb2.py") for p in (ROOT / "agentp2p" / "pb").glob("*_pb2.py")}
    assert schemas == modules
