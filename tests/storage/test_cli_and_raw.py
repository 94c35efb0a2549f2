"""`wirt disk` sub-commands, size parsing, the raw format and format probing."""

from __future__ import annotations

import pytest

from storage_helpers import assert_qemu_clean, mixed_data, qemu_img
from wirt.cli import main as wirt
from wirt.cli.disk import parse_size
from wirt.errors import WirtError
from wirt.storage import open_image
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.raw import RawImage

MiB = 1 << 20


@pytest.mark.parametrize("text,value", [("512", 512), ("64K", 65536), ("10M", 10 * MiB), ("2G", 2 << 30),
                                        ("1T", 1 << 40), ("1.5k", 1536), ("4KiB", 4096)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "ten", "5Q", "-1", "1.3"])
def test_parse_size_rejects(text):
    with pytest.raises(WirtError):
        parse_size(text)


def test_create_info_check_snapshot_resize(tmp_path, capsys):
    base, top = str(tmp_path / "base.raw"), str(tmp_path / "top.qcow2")
    assert wirt(["disk", "create", "-f", "raw", base, "8M"]) == 0
    assert wirt(["disk", "create", "--backing", base, "-F", "raw", "--cluster-size", "4K", top]) == 0
    assert wirt(["disk", "info", top]) == 0
    out = capsys.readouterr().out
    assert "virtual size: 8 MiB" in out and "backing file: " in out and "backing chain:" in out
    assert "cluster_size: 4096" in out and "file format: raw" in out
    with Qcow2Image(top, read_only=False) as img:
        img.write(0, b"hello")
    assert wirt(["disk", "snapshot", "-c", "before", top]) == 0
    assert wirt(["disk", "snapshot", top]) == 0
    assert "before" in capsys.readouterr().out
    assert "before" in qemu_img("snapshot", "-l", top).stdout
    with Qcow2Image(top, read_only=False) as img:
        img.write(0, b"HELLO")
    assert wirt(["disk", "snapshot", "-a", "before", top]) == 0
    with open_image(top) as img:
        assert img.read(0, 5) == b"hello"
    assert wirt(["disk", "snapshot", "-d", "before", top]) == 0
    assert wirt(["disk", "resize", top, "+8M"]) == 0
    with open_image(top) as img:
        assert img.size == 16 * MiB
    assert wirt(["disk", "check", top]) == 0
    assert "No errors were found" in capsys.readouterr().out
    assert_qemu_clean(top)
    assert wirt(["disk", "resize", base, "16M"]) == 0
    assert wirt(["disk", "resize", base, "1M"]) == 2


def test_check_reports_and_repairs_leaks(tmp_path, capsys):
    path = str(tmp_path / "leaky.qcow2")
    assert wirt(["disk", "create", "--cluster-size", "4K", path, "1M"]) == 0
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, b"\x01" * 40000)
        img.flush()
        table = img._l2_for_write(0)
        for i in (3, 4, 5):  # drop references without releasing the clusters: leaks
            table.set(i, 0)
    capsys.readouterr()
    assert wirt(["disk", "check", path]) == 3
    assert "3 leaked clusters" in capsys.readouterr().out
    assert qemu_img("check", path, check=False).returncode == 3
    assert wirt(["disk", "check", "--repair", path]) == 0
    assert "Repaired 3 leaked" in capsys.readouterr().out
    assert_qemu_clean(path)


def test_check_reports_corruption(tmp_path, capsys):
    path = str(tmp_path / "bad.qcow2")
    assert wirt(["disk", "create", "--cluster-size", "4K", path, "1M"]) == 0
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, b"\x01" * 20000)
        img.flush()
        img.refcounts.set((img.l1_table[0] & ((1 << 56) - 1)) >> 12, 0)  # the L2 table: referenced, count 0
    assert wirt(["disk", "check", path]) == 2
    assert "errors were found" in capsys.readouterr().out
    assert qemu_img("check", path, check=False).returncode == 2


@pytest.mark.parametrize("compress", [False, True])
def test_convert_round_trip(tmp_path, compress):
    src = str(tmp_path / "src.raw")
    data = mixed_data(3 * MiB, 11)
    open(src, "wb").write(data)
    q, back = str(tmp_path / "q.qcow2"), str(tmp_path / "back.raw")
    argv = ["disk", "convert", "-O", "qcow2"] + (["-c"] if compress else []) + [src, q]
    assert wirt(argv) == 0
    assert_qemu_clean(q)
    qemu_img("compare", "-F", "raw", q, src)
    assert wirt(["disk", "convert", "-O", "raw", q, back]) == 0
    assert open(back, "rb").read() == data
    if compress:
        import os

        assert os.path.getsize(q) < len(data) * 0.8


def test_convert_flattens_backing_chain(tmp_path):
    base = str(tmp_path / "base.raw")
    open(base, "wb").write(b"\x10" * MiB)
    top = str(tmp_path / "top.qcow2")
    assert wirt(["disk", "create", "-b", "base.raw", "-F", "raw", top]) == 0
    with Qcow2Image(top, read_only=False) as img:
        img.write(100, b"\x20" * 100)
    flat = str(tmp_path / "flat.qcow2")
    assert wirt(["disk", "convert", top, flat]) == 0
    with open_image(flat) as img:
        assert img.read(0, 300) == b"\x10" * 100 + b"\x20" * 100 + b"\x10" * 100
    assert "backing file" not in qemu_img("info", flat).stdout


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    for argv in (["disk", "create", str(tmp_path / "x.qcow2"), "12Q"],
                 ["disk", "create", "--cluster-size", "3K", str(tmp_path / "x.qcow2"), "1M"],
                 ["disk", "create", "-b", str(tmp_path / "none.raw"), str(tmp_path / "y.qcow2")],
                 ["disk", "info", str(tmp_path / "missing")],
                 ["disk", "snapshot", "-a", "nope", str(tmp_path / "missing")]):
        assert wirt(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("wirt: error:") and err.count("\n") == 1, err


def test_raw_block_device(tmp_path):
    path = str(tmp_path / "r.raw")
    with open(path, "wb") as f:
        f.truncate(MiB)
    with open_image(path, read_only=False) as img:
        assert isinstance(img, RawImage) and img.format_name == "raw" and img.size == MiB
        img.write(1000, b"\x05" * 5000)
        buf = bytearray(7000)
        img.readinto(0, memoryview(buf))
        assert buf[1000:6000] == b"\x05" * 5000 and buf[:1000] == bytes(1000)
        img.write_zeroes(2000, 1000)
        img.discard(4000, 100)
        assert img.read(1000, 5000) == b"\x05" * 1000 + bytes(1000) + b"\x05" * 1000 + bytes(100) + b"\x05" * 1900
        img.flush()
        assert sum(n for _, n, d in img.extents()) == MiB
        with pytest.raises(ValueError):
            img.write(MiB - 1, b"ab")
    with open_image(path) as img:
        assert img.read_only
        with pytest.raises(WirtError):
            img.write(0, b"x")


def test_raw_vectored_io_beyond_iov_max(tmp_path):
    """readv/writev of more buffers than one preadv/pwritev takes (IOV_MAX) keep their order."""
    from wirt.iovec import IOV_MAX
    from wirt.storage.raw import RawImage, create_raw

    path = str(tmp_path / "v.raw")
    create_raw(path, 1 << 20)
    data = bytes((i * 7 + 3) & 0xFF for i in range((IOV_MAX + 300) * 512))
    views = [memoryview(data)[i : i + 512] for i in range(0, len(data), 512)]
    with RawImage(path, read_only=False) as img:
        img.writev(4096, views)
        back = bytearray(len(data) + 8192)
        img.readv(0, [memoryview(back)[i : i + 512] for i in range(0, len(back), 512)])
    assert back[4096 : 4096 + len(data)] == data and back[:4096] == bytes(4096)
