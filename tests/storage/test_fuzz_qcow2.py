"""Fuzzing the qcow2 parser and `wirt disk check` (issue 20): random bytes written over the
metadata of a real image (header, refcount table and block, L1 and L2 tables). Opening, checking
and reading either work or raise a one-line WirtError: never another exception, and never memory
out of proportion to the file (numpy's allocations are traced)."""

from __future__ import annotations

import tracemalloc

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirt.errors import WirtError
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_check import check_image
from wirt.storage.qcow2_create import create_qcow2

CS = 65536
METADATA = 5 * CS  # header, refcount table, refcount block, L1 table, first L2 table
MEMORY_LIMIT = 64 << 20  # the image is ~0.5 MiB; its parsing may take a few tables' worth


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> bytes:
    path = str(tmp_path_factory.mktemp("fuzz") / "base.qcow2")
    create_qcow2(path, 16 << 20, cluster_size=CS)
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, b"\x5a" * 100_000)
        img.write(8 << 20, b"\x11" * CS)
        img.write_compressed(40, bytes(range(256)) * (CS // 256))
        img.create_snapshot("s1")
        img.write(CS, b"\x22" * 5000)
    return open(path, "rb").read()


edits = st.lists(st.tuples(st.integers(0, METADATA - 1), st.binary(min_size=1, max_size=16)), min_size=1,
                 max_size=8)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits)
def test_damaged_metadata_is_an_error_or_works(image, tmp_path, edits):
    data = bytearray(image)
    for at, blob in edits:
        data[at:at + len(blob)] = blob
    path = tmp_path / "fuzzed.qcow2"
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with Qcow2Image(str(path), read_only=True, repair_dirty=False) as img:
            check_image(img)
            for off in (0, CS, 8 << 20, 40 * CS, img.size - 4096):
                if 0 <= off <= img.size - 4096:
                    img.read(off, 4096)
    except WirtError as exc:
        assert "\n" not in str(exc)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"{peak >> 20} MiB for a {len(data) >> 10} KiB image"


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits)
def test_disk_check_finds_what_qemu_img_check_finds(image, tmp_path, edits):
    """The same damage shown to the real `qemu-img check`: when it reports corruptions (exit 2),
    `wirt disk check` reports corruptions too, or refuses to open the image with one line."""
    import shutil
    import subprocess

    exe = shutil.which("qemu-img")
    if exe is None:
        pytest.fail("qemu-img is missing; `make test` installs it (Debian package qemu-utils)")
    data = bytearray(image)
    for at, blob in edits:
        data[at:at + len(blob)] = blob
    path = tmp_path / "fuzzed.qcow2"
    path.write_bytes(bytes(data))
    qemu = subprocess.run([exe, "check", str(path)], capture_output=True, text=True)
    if qemu.returncode != 2:
        return
    try:
        with Qcow2Image(str(path), read_only=True, repair_dirty=False) as img:
            report = check_image(img)
    except WirtError as exc:
        assert "\n" not in str(exc)
        return
    assert report.corruptions, f"qemu-img check: {qemu.stdout.strip()[:500]}; wirt found none"
