"""Generate the Python code of every contract in proto/ into proto/python/.

Reproducible: the output depends only on the .proto files and the pinned
grpcio-tools. `--check` regenerates into a scratch directory and fails when
what is committed differs, so CI catches a forgotten regeneration.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = PROTO / "python"
PACKAGE = "bellhop"


def generate(out: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in (PROTO / PACKAGE).rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    plugins = Path(sys.executable).parent  # mypy-protobuf's plugins, from the lock
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for directory in [out / PACKAGE, *(d for d in (out / PACKAGE).rglob("*") if d.is_dir())]:
        (directory / "__init__.py").write_text("")
    (out / PACKAGE / "py.typed").write_text("")


def tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUT / PACKAGE, ignore_errors=True)
        OUT.mkdir(exist_ok=True)
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        want = tree(Path(scratch) / PACKAGE)
        have = {k: v for k, v in tree(OUT / PACKAGE).items() if "__pycache__" not in k}
        stale = sorted(
            k
            for k in want.keys() | have.keys()
            if k not in want or k not in have or not filecmp.cmp(want[k], have[k], shallow=False)
        )
    if stale:
        print("generated code differs from proto/ (run scripts/gen_proto.py):", *stale, sep="\n  ")
        return 1
    print("generated code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
