"""The committed generated modules are exactly what protoc makes of protos/agent.proto (`make protos`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[2]
GENERATED = ("agent_pb2.py", "agent_pb2.pyi", "agent_pb2_grpc.py")


def test_generated_protobuf_modules_are_current(tmp_path: Path) -> None:
    (tmp_path / "protos").mkdir()
    shutil.copy(REPO / "protos" / "agent.proto", tmp_path / "protos" / "agent.proto")
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}", str(tmp_path / "protos" / "agent.proto")]
    assert protoc.main(args) == 0
    for name in GENERATED:
        fresh = (tmp_path / "protos" / name).read_text()
        assert fresh == (REPO / "protos" / name).read_text(), f"protos/{name} is stale: run `make protos`"
