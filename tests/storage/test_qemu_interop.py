"""Interoperability with real qemu-img: our images read by QEMU, QEMU's images read by us."""

from __future__ import annotations

import pytest

from storage_helpers import assert_qemu_clean, mixed_data, pattern, qemu_img, qemu_io
from wirt.storage import open_image
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_create import create_qcow2

MiB = 1 << 20


def _write_raw(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


# -- our images, read by QEMU ---------------------------------------------------------------


@pytest.mark.parametrize("cluster_size", [512, 4096, 65536, 2 * MiB])
def test_our_image_passes_qemu_check_and_compare(tmp_path, cluster_size):
    size = 6 * MiB + 12800  # a whole number of sectors, as QEMU sizes disks
    path, raw = str(tmp_path / "ours.qcow2"), str(tmp_path / "expect.raw")
    model = bytearray(size)
    create_qcow2(path, size, cluster_size=cluster_size)
    with Qcow2Image(path, read_only=False) as img:
        for i, (off, n) in enumerate([(0, 5000), (70000, 300000), (size - 4000, 4000), (2 * MiB - 7, 3 * MiB),
                                      (123, 1), (4 * MiB, 65536 * 3)]):
            data = pattern(i, n)
            img.write(off, data)
            model[off : off + n] = data
        img.write_zeroes(3 * MiB, MiB)
        model[3 * MiB : 4 * MiB] = bytes(MiB)
        img.discard(100_000, 200_000)
        first = -(-100_000 // cluster_size) * cluster_size
        last = 300_000 // cluster_size * cluster_size
        if last > first:
            model[first:last] = bytes(last - first)
        img.flush()
        assert img.read(0, size) == model
    _write_raw(raw, model)
    assert_qemu_clean(path)
    qemu_img("compare", "-f", "qcow2", "-F", "raw", path, raw)


def test_our_snapshots_listed_and_readable_by_qemu(tmp_path):
    path = str(tmp_path / "snap.qcow2")
    create_qcow2(path, 4 * MiB, cluster_size=65536)
    states = {}
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, pattern(1, 2 * MiB))
        img.create_snapshot("first")
        states["first"] = img.read(0, img.size)
        img.write(MiB, pattern(2, 2 * MiB))
        img.discard(0, 65536 * 4)
        img.create_snapshot("second")
        states["second"] = img.read(0, img.size)
        img.write(100, pattern(3, 70000))
        current = img.read(0, img.size)
    assert_qemu_clean(path)
    listing = qemu_img("snapshot", "-l", path).stdout
    assert "first" in listing and "second" in listing
    for name, data in states.items():
        out = str(tmp_path / f"{name}.raw")
        qemu_img("convert", "-l", f"snapshot.name={name}", "-O", "raw", path, out)
        assert open(out, "rb").read() == data
    _write_raw(tmp_path / "cur.raw", current)
    qemu_img("compare", "-F", "raw", path, str(tmp_path / "cur.raw"))
    # QEMU can apply and delete our snapshots too, and the image stays consistent.
    qemu_img("snapshot", "-a", "first", path)
    qemu_img("snapshot", "-d", "second", path)
    assert_qemu_clean(path)
    with open_image(path) as img:
        assert img.read(0, img.size) == states["first"]


def test_our_backing_chain_read_by_qemu(tmp_path):
    base = str(tmp_path / "base.raw")
    _write_raw(base, mixed_data(3 * MiB, 5))
    mid, top = str(tmp_path / "mid.qcow2"), str(tmp_path / "top.qcow2")
    create_qcow2(mid, 3 * MiB, backing="base.raw", backing_format="raw")
    create_qcow2(top, 4 * MiB, backing="mid.qcow2", backing_format="qcow2", cluster_size=4096)
    with Qcow2Image(mid, read_only=False) as img:
        img.write(MiB + 100, pattern(7, 5000))
    with Qcow2Image(top, read_only=False) as img:
        img.write(10, pattern(8, 300))
        img.write_zeroes(2 * MiB, 8192)
        expected = img.read(0, img.size)
    _write_raw(tmp_path / "exp.raw", expected)
    assert_qemu_clean(top)
    assert_qemu_clean(mid)
    qemu_img("compare", "-F", "raw", top, str(tmp_path / "exp.raw"))
    info = qemu_img("info", "--backing-chain", top).stdout
    assert "mid.qcow2" in info and "base.raw" in info


def test_compressed_output_read_by_qemu(tmp_path):
    from wirt.storage.convert import convert

    src = str(tmp_path / "src.raw")
    _write_raw(src, mixed_data(5 * MiB, 9))
    dst = str(tmp_path / "c.qcow2")
    convert(src, dst, "qcow2", compress=True)
    assert_qemu_clean(dst)
    qemu_img("compare", "-F", "raw", dst, src)
    assert "compressed" in qemu_img("check", dst).stdout


# -- QEMU's images, read by us --------------------------------------------------------------


def _read_all(path: str) -> bytes:
    with open_image(path) as img:
        return img.read(0, img.size)


def test_read_qemu_compressed(tmp_path):
    src = str(tmp_path / "src.raw")
    data = mixed_data(4 * MiB + 333, 1)
    _write_raw(src, data)
    for cs in ("4k", "64k", "2M"):
        dst = str(tmp_path / f"c{cs}.qcow2")
        qemu_img("convert", "-c", "-O", "qcow2", "-o", f"cluster_size={cs}", src, dst)
        got = _read_all(dst)  # QEMU rounds the virtual size up to whole sectors
        assert got[: len(data)] == data and not got[len(data) :].strip(b"\0")


@pytest.mark.parametrize("opts", ["cluster_size=4k", "cluster_size=2M", "compat=0.10", "refcount_bits=1",
                                  "refcount_bits=64,cluster_size=512"])
def test_read_qemu_images_of_many_settings(tmp_path, opts):
    src = str(tmp_path / "src.raw")
    data = mixed_data(3 * MiB, 2)
    _write_raw(src, data)
    dst = str(tmp_path / "q.qcow2")
    qemu_img("convert", "-O", "qcow2", "-o", opts, src, dst)
    assert _read_all(dst) == data
    # Write through wirt as well, then QEMU must still find it consistent and equal.
    with Qcow2Image(dst, read_only=False) as img:
        img.write(12345, pattern(3, 200_000))
        img.discard(MiB, MiB)
        final = img.read(0, img.size)
    assert_qemu_clean(dst)
    _write_raw(tmp_path / "final.raw", final)
    qemu_img("compare", "-F", "raw", dst, str(tmp_path / "final.raw"))


def test_read_qemu_backing_chain(tmp_path):
    base = str(tmp_path / "base.qcow2")
    qemu_img("create", "-f", "qcow2", base, "4M")
    qemu_io(base, "write -P 0x11 0 4M")
    raw = str(tmp_path / "raw.img")
    _write_raw(raw, b"\x22" * (2 * MiB))
    mid = str(tmp_path / "mid.qcow2")
    qemu_img("create", "-f", "qcow2", "-b", base, "-F", "qcow2", "-o", "cluster_size=4k", mid)
    qemu_io(mid, "write -P 0x33 1M 64k", "write -z 2M 64k", "discard 3M 64k")
    top = str(tmp_path / "top.qcow2")
    qemu_img("create", "-f", "qcow2", "-b", mid, "-F", "qcow2", top, "5M")
    qemu_io(top, "write -P 0x44 100 10", "write -P 0x55 4M 1k")
    expected = str(tmp_path / "expected.raw")
    qemu_img("convert", "-O", "raw", top, expected)
    assert _read_all(top) == open(expected, "rb").read()
    # A raw file in the middle of a chain.
    top2 = str(tmp_path / "top2.qcow2")
    qemu_img("create", "-f", "qcow2", "-b", raw, "-F", "raw", top2, "3M")
    qemu_io(top2, "write -P 0x66 1M 1M")
    qemu_img("convert", "-O", "raw", top2, expected)
    assert _read_all(top2) == open(expected, "rb").read()


def test_read_and_use_qemu_snapshots(tmp_path):
    path = str(tmp_path / "s.qcow2")
    qemu_img("create", "-f", "qcow2", path, "2M")
    qemu_io(path, "write -P 0xaa 0 1M")
    qemu_img("snapshot", "-c", "one", path)
    qemu_io(path, "write -P 0xbb 512k 1M")
    qemu_img("snapshot", "-c", "two", path)
    qemu_io(path, "write -P 0xcc 0 64k")
    with Qcow2Image(path, read_only=False) as img:
        assert [s.name for s in img.list_snapshots()] == ["one", "two"]
        assert img.read(0, 65536) == b"\xcc" * 65536
        img.apply_snapshot("one")
        assert img.read(0, MiB) == b"\xaa" * MiB and img.read(MiB, MiB) == bytes(MiB)
        img.delete_snapshot("two")
        img.write(0, b"\xdd" * 100)
    assert_qemu_clean(path)
    assert "two" not in qemu_img("snapshot", "-l", path).stdout
    with open_image(path) as img:
        assert img.read(0, 101) == b"\xdd" * 100 + b"\xaa"
