"""Deterministic packing and safe, verified extraction."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from model_package.archive import archive_digest, extract, pack
from model_package.errors import DigestMismatchError, IntegrityError, UnsafeArchiveError, UnsupportedSchemaVersionError
from model_package.hashing import sha256_file
from model_package.verify import verify_integrity
from tests.model_package.conftest import PackageFactory


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_packing_twice_gives_identical_bytes_whatever_the_thread_count(
    make_package: PackageFactory, tmp_path: Path
) -> None:
    package = make_package()
    first = pack(package, tmp_path / "a" / "model.tar.gz", threads=1)
    second = pack(package, tmp_path / "b" / "model.tar.gz", threads=2)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.digest == second.digest == sha256_file(first.path)
    assert archive_digest(package) == first.digest


def test_archive_extracts_with_standard_tar_and_has_normalised_headers(
    make_package: PackageFactory, tmp_path: Path
) -> None:
    package = make_package()
    archive = pack(package, tmp_path / "model.tar.gz").path
    out = tmp_path / "tar-out"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    assert _tree(out) == _tree(package)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["manifest.json", "example/inputs.npz", "example/outputs.npz", "model.onnx"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    header = archive.read_bytes()[:10]
    assert header[3] == 0, "gzip header must not carry a file name"
    assert header[4:8] == b"\0\0\0\0", "gzip header must not carry a timestamp"


def test_extract_round_trips_and_checks_the_digest(make_package: PackageFactory, tmp_path: Path) -> None:
    package = make_package()
    result = pack(package, tmp_path / "model.tar.gz")
    manifest = extract(result.path, tmp_path / "out", expected_digest=result.digest)
    assert manifest.name == "demo"
    assert _tree(tmp_path / "out") == _tree(package)
    with pytest.raises(DigestMismatchError, match="sha256"):
        extract(result.path, tmp_path / "out2", expected_digest="0" * 64)
    assert not (tmp_path / "out2").exists()


def test_flipped_byte_in_weights_is_detected_and_pack_writes_nothing(
    make_package: PackageFactory, tmp_path: Path
) -> None:
    package = make_package()
    weights = package / "model.onnx"
    data = bytearray(weights.read_bytes())
    data[1234] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.onnx: sha256 is .* the manifest says"):
        verify_integrity(package)
    dest = tmp_path / "out" / "model.tar.gz"
    with pytest.raises(IntegrityError, match=r"model\.onnx"):
        pack(package, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_extra_file_is_rejected(make_package: PackageFactory, tmp_path: Path) -> None:
    package = make_package()
    (package / "backdoor.py").write_text("import os\n")
    with pytest.raises(IntegrityError, match=r"not listed in the manifest: backdoor\.py"):
        verify_integrity(package)
    with pytest.raises(IntegrityError, match=r"backdoor\.py"):
        pack(package, tmp_path / "model.tar.gz")


def test_missing_file_is_rejected(make_package: PackageFactory) -> None:
    package = make_package()
    (package / "example" / "outputs.npz").unlink()
    with pytest.raises(IntegrityError, match=r"missing: example/outputs\.npz"):
        verify_integrity(package)


def test_unknown_major_schema_version_is_rejected(make_package: PackageFactory) -> None:
    package = make_package()
    manifest_path = package / "manifest.json"
    raw = json.loads(manifest_path.read_text())
    raw["schema_version"] = "2.0"
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(UnsupportedSchemaVersionError, match=r"schema_version 2\.0 is not supported.*1\.x"):
        verify_integrity(package)


def _archive_with(tmp_path: Path, package: Path, extra: list[tarfile.TarInfo], data: bytes = b"pwned") -> Path:
    """A gzip tar holding the package plus hand-crafted hostile entries (hostile ones first)."""
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for info in extra:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
        for path in sorted(package.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(package).as_posix())
    return archive


def _file_entry(name: str, size: int = 5) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link_entry(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_file_entry("../escaped.txt"), "would escape the package root"),
        (_file_entry("example/../../escaped.txt"), "would escape the package root"),
        (_file_entry("/tmp/absolute-escape.txt"), "would escape the package root"),
        (_link_entry("evil-link", "/etc/passwd"), "is a link"),
        (_link_entry("hard-link", "../../outside", tarfile.LNKTYPE), "is a link"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "hardlink-out"],
)
def test_hostile_archive_entries_are_rejected_and_nothing_is_written(
    make_package: PackageFactory, tmp_path: Path, entry: tarfile.TarInfo, message: str
) -> None:
    package = make_package()
    archive = _archive_with(tmp_path, package, [entry])
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "unpacked"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract(archive, dest)
    assert not dest.exists()
    assert list(work.iterdir()) == [], "no staging debris may be left behind"
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/absolute-escape.txt").exists()


def test_archive_with_tampered_file_is_rejected_after_unpacking_into_staging_only(
    make_package: PackageFactory, tmp_path: Path
) -> None:
    package = make_package()
    tampered = tmp_path / "tampered"
    shutil.copytree(package, tampered)
    (tampered / "model.onnx").write_bytes(b"not the weights")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tampered, arcname=".")
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError, match=r"model\.onnx: size is"):
        extract(archive, dest)
    assert not dest.exists()


def test_hand_made_archive_with_dot_prefix_is_accepted(make_package: PackageFactory, tmp_path: Path) -> None:
    """`tar -czf model.tar.gz -C dir .` (what teams do today) yields './' names; those are fine."""
    package = make_package()
    archive = tmp_path / "model.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(package), "."], check=True)
    manifest = extract(archive, tmp_path / "dest")
    assert manifest.name == "demo"


def test_truncated_archive_is_a_clear_integrity_error(make_package: PackageFactory, tmp_path: Path) -> None:
    package = make_package()
    archive = pack(package, tmp_path / "model.tar.gz").path
    archive.write_bytes(archive.read_bytes()[:-4000])
    with pytest.raises(IntegrityError, match="not a valid gzip-compressed tar archive"):
        extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
