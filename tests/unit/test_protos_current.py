"""The committed generated modules are exactly what protoc makes of the .proto files (`make protos`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[2]
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def test_generated_protobuf_modules_are_current(tmp_path: Path) -> None:
    sources = sorted((REPO / "protos").rglob("*.proto"))
    assert sources, "no .proto files found"
    for source in sources:
        target = tmp_path / source.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}", *(str(tmp_path / s.relative_to(REPO)) for s in sources)]
    assert protoc.main(args) == 0
    for source in sources:
        stem = source.relative_to(REPO).with_suffix("")
        for suffix in SUFFIXES:
            name = f"{stem}{suffix}"
            fresh = (tmp_path / name).read_text()
            committed = REPO / name
            assert committed.exists() and fresh == committed.read_text(), f"{name} is stale: run `make protos`"
