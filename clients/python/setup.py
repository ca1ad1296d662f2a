"""Generates the gRPC stubs from the repository's proto/ while the package is built.

The stubs are build output, not source: `build_py` runs grpcio-tools' protoc on
proto/autopilot/v1/autopilot.proto and writes autopilot/v1/autopilot_pb2{,_grpc}.py(i) into the
build directory, so every install carries code generated from the contract as it is.
"""

from importlib.resources import files
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
CONTRACT = "autopilot/v1/autopilot.proto"


class BuildWithStubs(build_py):
    """build_py, plus the stubs generated from the contract."""

    def run(self) -> None:
        super().run()
        if not (PROTO_ROOT / CONTRACT).is_file():
            raise SystemExit(f"{PROTO_ROOT / CONTRACT} is missing: build from the autopilot repository")
        from grpc_tools import protoc

        out = Path(self.build_lib)
        well_known = files("grpc_tools") / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            CONTRACT,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("generating the gRPC stubs from the contract failed")
        (out / "autopilot" / "v1" / "__init__.py").write_text('"""Generated from proto/autopilot/v1."""\n')


setup(cmdclass={"build_py": BuildWithStubs})
