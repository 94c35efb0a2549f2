"""Damaged or hostile images: a clear one-line WirtError, never a crash, and a read-only open never
modifies the file."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from wirt.cli import main as wirt_main
from wirt.errors import WirtError
from wirt.storage import open_image
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_create import create_qcow2
from wirt.storage.qcow2_check import check_image

CS = 65536
L1_OFF = 3 * CS  # create_qcow2 layout: header, refcount table, refcount block, L1 table
REFTABLE_OFF = CS


def _image(tmp_path, name="bad.qcow2", data=True) -> str:
    path = str(tmp_path / name)
    create_qcow2(path, 4 << 20, cluster_size=CS)
    if data:
        with Qcow2Image(path, read_only=False) as img:
            img.write(0, b"\x5a" * 200_000)
    return path


def _poke(path: str, offset: int, fmt: str, *values: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _use_read_only(path: str) -> None:
    """Open read-only and touch everything: metadata errors must surface as WirtError.

    Refcount damage does not stop reads (refcounts only matter for writing), so there the check
    must report it; that too is turned into a WirtError here."""
    with open_image(path, read_only=True) as img:
        img.read(0, img.size)
        if isinstance(img, Qcow2Image):
            report = check_image(img)
            if report.corruptions:
                raise WirtError(f"{path}: check found {report.corruptions} corruptions")


def _truncated(tmp_path):
    path = _image(tmp_path, data=False)
    with open(path, "r+b") as f:
        f.truncate(50)
    return path


def _truncated_v3(tmp_path):
    path = _image(tmp_path, data=False)
    with open(path, "r+b") as f:
        f.truncate(90)
    return path


def _l1_past_eof(tmp_path):
    path = _image(tmp_path)
    _poke(path, 40, ">Q", 1 << 40)
    return path


def _l1_unaligned(tmp_path):
    path = _image(tmp_path)
    _poke(path, 40, ">Q", L1_OFF + 8)
    return path


def _l2_past_eof(tmp_path):
    path = _image(tmp_path)
    _poke(path, L1_OFF, ">Q", (1 << 40) | (1 << 63))
    return path


def _l2_unaligned(tmp_path):
    path = _image(tmp_path)
    _poke(path, L1_OFF, ">Q", (5 * CS + 4096) | (1 << 63))
    return path


def _reftable_past_eof(tmp_path):
    path = _image(tmp_path)
    _poke(path, 48, ">Q", 1 << 40)
    return path


def _reftable_unaligned(tmp_path):
    path = _image(tmp_path)
    _poke(path, 48, ">Q", REFTABLE_OFF + 512)
    return path


def _refblock_past_eof(tmp_path):
    path = _image(tmp_path)
    _poke(path, REFTABLE_OFF, ">Q", 1 << 40)
    return path


def _l1_overlaps_reftable(tmp_path):
    path = _image(tmp_path)
    _poke(path, 40, ">Q", REFTABLE_OFF)
    return path


def _l2_overlaps_header(tmp_path):
    path = _image(tmp_path)
    _poke(path, L1_OFF, ">Q", REFTABLE_OFF | (1 << 63))  # the L2 table "is" the refcount table
    return path


def _backing_loop(tmp_path):
    a, b = str(tmp_path / "a.qcow2"), str(tmp_path / "b.qcow2")
    create_qcow2(b, 1 << 20)
    create_qcow2(a, 1 << 20, backing="b.qcow2", backing_format="qcow2")
    create_qcow2(b, 1 << 20, backing="a.qcow2", backing_format="qcow2")
    return a


def _backing_self(tmp_path):
    a, b = str(tmp_path / "a.qcow2"), str(tmp_path / "b.qcow2")
    create_qcow2(b, 1 << 20)
    create_qcow2(a, 1 << 20, backing="b.qcow2")
    os.remove(b)
    os.symlink("a.qcow2", b)
    return a


def _backing_missing(tmp_path):
    base, top = str(tmp_path / "base.raw"), str(tmp_path / "top.qcow2")
    with open(base, "wb") as f:
        f.truncate(1 << 20)
    create_qcow2(top, 1 << 20, backing="base.raw", backing_format="raw")
    os.remove(base)
    return top


def _huge_size(tmp_path):
    path = _image(tmp_path)
    _poke(path, 24, ">Q", 1 << 62)
    return path


def _unknown_incompat(tmp_path):
    path = _image(tmp_path)
    _poke(path, 72, ">Q", 1 << 37)
    return path


def _external_data_file(tmp_path):
    path = _image(tmp_path)
    _poke(path, 72, ">Q", 1 << 2)
    return path


def _bad_cluster_bits(tmp_path):
    path = _image(tmp_path)
    _poke(path, 20, ">I", 30)
    return path


def _bad_version(tmp_path):
    path = _image(tmp_path)
    _poke(path, 4, ">I", 4)
    return path


def _encrypted(tmp_path):
    path = _image(tmp_path)
    _poke(path, 32, ">I", 1)
    return path


def _l1_too_small(tmp_path):
    path = _image(tmp_path)
    _poke(path, 36, ">I", 0)
    return path


def _garbage_extensions(tmp_path):
    path = _image(tmp_path)
    _poke(path, 112, ">II", 0x12345678, 0xFFFFFF)
    return path


CASES = {
    "truncated header": _truncated,
    "truncated v3 header": _truncated_v3,
    "L1 past end of file": _l1_past_eof,
    "L1 unaligned": _l1_unaligned,
    "L2 past end of file": _l2_past_eof,
    "L2 unaligned": _l2_unaligned,
    "refcount table past end of file": _reftable_past_eof,
    "refcount table unaligned": _reftable_unaligned,
    "refcount block past end of file": _refblock_past_eof,
    "L1 overlaps refcount table": _l1_overlaps_reftable,
    "L2 overlaps metadata": _l2_overlaps_header,
    "backing chain loops": _backing_loop,
    "backing chain loops through a symlink": _backing_self,
    "backing file missing": _backing_missing,
    "huge size": _huge_size,
    "unknown incompatible feature": _unknown_incompat,
    "external data file feature": _external_data_file,
    "cluster size out of range": _bad_cluster_bits,
    "unknown version": _bad_version,
    "encrypted": _encrypted,
    "L1 too small for size": _l1_too_small,
    "garbage header extension": _garbage_extensions,
}

# Damage that only shows once the bad table is used (reading data, or checking refcounts).
LAZY = {"L2 past end of file", "L2 unaligned", "L2 overlaps metadata", "refcount block past end of file"}


@pytest.mark.parametrize("case", list(CASES))
def test_read_only_open_gives_clear_error_and_never_writes(tmp_path, case):
    path = CASES[case](tmp_path)
    before = _digest(path)
    with pytest.raises(WirtError) as err:
        _use_read_only(path)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400 and os.path.basename(path) in msg, msg
    assert _digest(path) == before, "a read-only open modified the image"


@pytest.mark.parametrize("case", sorted(LAZY))
def test_writable_open_refuses_to_use_damaged_tables(tmp_path, case):
    path = CASES[case](tmp_path)
    with pytest.raises(WirtError):
        with Qcow2Image(path, read_only=False) as img:
            img.read(0, img.size)
            img.write(0, b"x" * 300_000)
            img.write(3 << 20, b"y" * 300_000)
            img.flush()


@pytest.mark.parametrize("case", ["truncated header", "L1 past end of file", "backing chain loops",
                                  "backing file missing", "unknown incompatible feature", "huge size"])
def test_cli_reports_one_line_and_status_2(tmp_path, case, capsys):
    path = CASES[case](tmp_path)
    before = _digest(path)
    for argv in (["disk", "info", path], ["disk", "check", path], ["disk", "snapshot", "-l", path]):
        assert wirt_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("wirt: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert _digest(path) == before


def test_corrupt_bit_is_honoured(tmp_path):
    path = _image(tmp_path)
    _poke(path, 72, ">Q", 1 << 1)
    before = _digest(path)
    with pytest.raises(WirtError, match="corrupt"):
        Qcow2Image(path, read_only=False)
    with Qcow2Image(path) as img:  # reading is still allowed
        assert img.read(0, 10) == b"\x5a" * 10
    assert _digest(path) == before


def test_damage_found_while_writing_sets_corrupt_bit(tmp_path):
    path = _image(tmp_path)
    _poke(path, L1_OFF, ">Q", (1 << 40) | (1 << 63))
    with pytest.raises(WirtError):
        with Qcow2Image(path, read_only=False) as img:
            img.write(0, b"x")
    with open(path, "rb") as f:
        f.seek(72)
        assert struct.unpack(">Q", f.read(8))[0] & 2
    with pytest.raises(WirtError, match="corrupt"):
        Qcow2Image(path, read_only=False)


def test_not_qcow2_when_forced(tmp_path):
    path = str(tmp_path / "plain.img")
    with open(path, "wb") as f:
        f.write(os.urandom(4096))
    with pytest.raises(WirtError, match="not a qcow2 image"):
        open_image(path, format="qcow2")
    with pytest.raises(WirtError, match="no such file"):
        open_image(str(tmp_path / "missing.qcow2"))
