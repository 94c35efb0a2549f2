"""qcow2 features one by one: flags, versions, chains, cluster types, growth of tables, resize."""

from __future__ import annotations

import struct

import pytest

from storage_helpers import assert_qemu_clean, mixed_data, pattern, qemu_img, qemu_io
from wirt.errors import WirtError
from wirt.storage import open_image
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_create import create_qcow2

MiB = 1 << 20


def _incompat(path: str) -> int:
    with open(path, "rb") as f:
        f.seek(72)
        return struct.unpack(">Q", f.read(8))[0]


def test_dirty_bit_set_while_open_for_writing(tmp_path):
    path = str(tmp_path / "d.qcow2")
    create_qcow2(path, MiB)
    assert _incompat(path) & 1 == 0
    with Qcow2Image(path, read_only=False) as img:
        assert _incompat(path) & 1
        img.write(0, b"abc")
        assert img.read(0, 3) == b"abc"
    assert _incompat(path) & 1 == 0
    with Qcow2Image(path) as img:  # read-only opens leave it alone
        assert _incompat(path) & 1 == 0


def test_dirty_image_is_repaired_on_writable_open(tmp_path):
    path = str(tmp_path / "d.qcow2")
    create_qcow2(path, MiB, cluster_size=4096)
    img = Qcow2Image(path, read_only=False)
    img.write(0, pattern(1, 100_000))
    img.flush()
    img.discard(0, 50_000)
    img._refs.write_dirty()  # simulate a crash after refcounts were written but nothing else
    img._f.close()
    assert _incompat(path) & 1
    assert qemu_img("check", path, check=False).returncode in (0, 3)
    with Qcow2Image(path, read_only=False) as img:
        assert img.read(0, 100_000) == pattern(1, 100_000)
    assert_qemu_clean(path)


def test_version2_images_read_and_written(tmp_path):
    src = str(tmp_path / "src.raw")
    data = mixed_data(2 * MiB, 3)
    open(src, "wb").write(data)
    path = str(tmp_path / "v2.qcow2")
    qemu_img("convert", "-O", "qcow2", "-o", "compat=0.10", src, path)
    with Qcow2Image(path, read_only=False) as img:
        assert img.version == 2 and img.read(0, img.size) == data
        img.write_zeroes(0, MiB)  # no zero flag in v2: really written or deallocated
        img.write(MiB, b"\x01" * 1000)
        img.create_snapshot("v2snap")
    assert_qemu_clean(path)
    assert "v2snap" in qemu_img("snapshot", "-l", path).stdout
    with open_image(path) as img:
        assert img.read(0, MiB) == bytes(MiB) and img.read(MiB, 1000) == b"\x01" * 1000


def test_deep_mixed_backing_chain(tmp_path):
    base = tmp_path / "l0.raw"
    size = 1 * MiB
    model = bytearray(pattern(0, size))
    base.write_bytes(model)
    prev, prev_fmt = "l0.raw", "raw"
    for level in range(1, 13):
        name = f"l{level}.qcow2" if level % 4 else f"l{level}.raw"
        if level % 4 == 0:  # a raw layer: a flattened copy of everything below
            with open_image(str(tmp_path / prev)) as below:
                (tmp_path / name).write_bytes(below.read(0, size))
            prev, prev_fmt = name, "raw"
            continue
        create_qcow2(str(tmp_path / name), size, cluster_size=4096 if level % 2 else 65536,
                     backing=prev, backing_format=prev_fmt)
        with Qcow2Image(str(tmp_path / name), read_only=False) as img:
            off = level * 50_000
            img.write(off, pattern(level, 30_000))
            model[off : off + 30_000] = pattern(level, 30_000)
        prev, prev_fmt = name, "qcow2"
    with open_image(str(tmp_path / prev)) as top:
        assert top.read(0, size) == model
    out = str(tmp_path / "flat.raw")
    qemu_img("convert", "-O", "raw", str(tmp_path / prev), out)
    assert open(out, "rb").read() == model


def test_backing_shorter_than_image_reads_zeros(tmp_path):
    (tmp_path / "small.raw").write_bytes(b"\x77" * 10_000)
    top = str(tmp_path / "top.qcow2")
    create_qcow2(top, MiB, backing="small.raw", backing_format="raw")
    with open_image(top) as img:
        assert img.read(0, 20_000) == b"\x77" * 10_000 + bytes(10_000)


def test_copy_on_write_keeps_backing_intact(tmp_path):
    base = str(tmp_path / "base.qcow2")
    create_qcow2(base, MiB)
    with Qcow2Image(base, read_only=False) as img:
        img.write(0, b"\x11" * MiB)
    top = str(tmp_path / "top.qcow2")
    create_qcow2(top, MiB, backing="base.qcow2")
    with Qcow2Image(top, read_only=False) as img:
        img.write(1000, b"\x22" * 10)
        img.discard(65536, 65536)  # v3 with backing: a zero cluster, not the backing data
        assert img.read(990, 30) == b"\x11" * 10 + b"\x22" * 10 + b"\x11" * 10
        assert img.read(65536, 65536) == bytes(65536)
    with open_image(base) as img:
        assert img.read(0, MiB) == b"\x11" * MiB


def test_writes_into_compressed_clusters(tmp_path):
    src = str(tmp_path / "src.raw")
    data = bytearray(mixed_data(MiB, 4))
    open(src, "wb").write(data)
    path = str(tmp_path / "c.qcow2")
    qemu_img("convert", "-c", "-O", "qcow2", src, path)
    with Qcow2Image(path, read_only=False) as img:
        img.write(70_000, b"\x99" * 100)
        data[70_000:70_100] = b"\x99" * 100
        img.discard(0, 65536)
        data[0:65536] = bytes(65536)
        assert img.read(0, MiB) == data
    assert_qemu_clean(path)


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 32, 64])
def test_refcount_widths(tmp_path, bits):
    path = str(tmp_path / "r.qcow2")
    create_qcow2(path, 2 * MiB, cluster_size=4096, refcount_bits=bits)
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, pattern(bits, 300_000))
        img.discard(0, 100_000)
        img.write(500_000, pattern(bits + 1, 300_000))
        if bits == 1:
            with pytest.raises(WirtError, match="refcount"):
                img.create_snapshot("too-many-refs")
        else:
            img.create_snapshot("s")
            img.write(0, b"x" * 5000)
    assert_qemu_clean(path)


def test_refcount_table_grows(tmp_path):
    # 512-byte clusters: one refcount table cluster covers only 8 MiB of file.
    path = str(tmp_path / "g.qcow2")
    create_qcow2(path, 24 * MiB, cluster_size=512)
    data = mixed_data(12 * MiB, 6)
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, data)
        assert img.refcounts.table_clusters > 1
    assert_qemu_clean(path)
    with open_image(path) as img:
        assert img.read(0, len(data)) == data


def test_resize_grows_l1_and_reads_zeros(tmp_path):
    path = str(tmp_path / "r.qcow2")
    create_qcow2(path, MiB + 1000, cluster_size=4096)
    with Qcow2Image(path, read_only=False) as img:
        img.write(MiB, b"\x42" * 1000)
        img.resize(64 * MiB)  # 4 KiB clusters: one L2 table maps 2 MiB, so the L1 table grows
        assert img.size == 64 * MiB
        assert img.read(MiB, 5000) == b"\x42" * 1000 + bytes(4000)
        img.write(63 * MiB, b"\x43" * 4096)
        with pytest.raises(WirtError, match="shrink"):
            img.resize(MiB)
    assert_qemu_clean(path)
    assert "67108864" in qemu_img("info", path).stdout


def test_read_only_refuses_writes(tmp_path):
    path = str(tmp_path / "ro.qcow2")
    create_qcow2(path, MiB)
    with Qcow2Image(path) as img:
        assert img.read_only
        for call in (lambda: img.write(0, b"x"), lambda: img.discard(0, 512), lambda: img.write_zeroes(0, 512)):
            with pytest.raises(WirtError, match="read-only"):
                call()
        with pytest.raises(ValueError):
            img.read(MiB - 1, 2)


def test_readinto_memoryview_and_zero_copy(tmp_path):
    path = str(tmp_path / "m.qcow2")
    create_qcow2(path, MiB, cluster_size=4096)
    with Qcow2Image(path, read_only=False) as img:
        img.write(4000, memoryview(bytearray(b"\x01" * 10000)))
        ram = bytearray(20000)
        img.readinto(3000, memoryview(ram)[500:12500])
        assert ram[500:1500] == bytes(1000) and ram[1500:11500] == b"\x01" * 10000


def test_snapshot_errors(tmp_path):
    path = str(tmp_path / "s.qcow2")
    create_qcow2(path, MiB)
    with Qcow2Image(path, read_only=False) as img:
        img.create_snapshot("a")
        with pytest.raises(WirtError, match="already exists"):
            img.create_snapshot("a")
        with pytest.raises(WirtError, match="no snapshot"):
            img.apply_snapshot("nope")
        with pytest.raises(WirtError, match="no snapshot"):
            img.delete_snapshot("nope")
        img.apply_snapshot("1")  # by ID, as qemu-img allows
        img.delete_snapshot("a")
        assert img.list_snapshots() == []
    assert_qemu_clean(path)


def test_snapshot_apply_restores_size(tmp_path):
    path = str(tmp_path / "s.qcow2")
    create_qcow2(path, MiB, cluster_size=4096)
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, b"\x01" * 5000)
        img.create_snapshot("small")
        img.resize(8 * MiB)
        img.write(7 * MiB, b"\x02" * 5000)
        img.apply_snapshot("small")
        assert img.size == MiB and img.read(0, 5000) == b"\x01" * 5000
    assert_qemu_clean(path)
    qemu_io(path, "read -P 1 0 5000")
