"""Hostile qcow2 images (issue 20, class 3): each gets a one-line error or is handled, in a few
seconds of CPU and with memory bounded by the image's real size, never by what its metadata
claims; `wirt disk check` finds what `qemu-img check` finds.

Each case runs `wirt disk ...` in a child process whose peak RSS is measured (wait4).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time

import pytest

from wirt.storage.qcow2 import MAX_CHAIN, Qcow2Image
from wirt.storage.qcow2_create import create_qcow2

CS = 65536
L1_OFF = 3 * CS  # create_qcow2 layout: header, refcount table, refcount block, L1 table
RSS_LIMIT = 512 << 20
CPU_LIMIT = 5.0


def wirt(*args: str) -> tuple[int, str, str, int, float]:
    """Run `wirt ARGS` (address space capped at 4 GiB as a safety net); (status, stdout, stderr,
    peak RSS in bytes, CPU seconds)."""
    return wirt_python(None, *args)


# A child's ru_maxrss starts at its parent's RSS high-water mark (Linux carries the forked memory's
# peak over exec), and pytest's own RSS can be gigabytes by now: a small fresh launcher process
# starts the measured child and reports its wait4 usage.
_LAUNCHER = """
import json, os, resource, subprocess, sys
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
proc = subprocess.Popen(sys.argv[2:], preexec_fn=cap)
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime], f)
"""


def wirt_python(script: str | None, *args: str) -> tuple[int, str, str, int, float]:
    """`wirt ARGS`, or Python `script` with ARGS, in a measured child (see `wirt`)."""
    import json
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as usage:
        argv = [sys.executable, "-m", "wirt"] if script is None else [sys.executable, "-c", script]
        subprocess.run([sys.executable, "-c", _LAUNCHER, usage.name, *argv, *args], stdout=out, stderr=err,
                       stdin=subprocess.DEVNULL, check=True)
        code, rss, cpu = json.load(usage)
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read(), rss, cpu


def one_line_error(code: int, err: str) -> None:
    assert code != 0, err
    assert "Traceback" not in err and err.startswith("wirt: error:") and err.strip().count("\n") == 0, err


def bounded(rss: int, cpu: float) -> None:
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"
    assert cpu < CPU_LIMIT, f"{cpu:.1f} s of CPU"


def _image(tmp_path, name: str = "img.qcow2") -> str:
    path = str(tmp_path / name)
    create_qcow2(path, 4 << 20, cluster_size=CS)
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, b"\x5a" * 200_000)
        img.write_compressed(4, bytes(range(256)) * (CS // 256))
    return path


def _l2_offset(path: str) -> int:
    with open(path, "rb") as f:
        f.seek(L1_OFF)
        return struct.unpack(">Q", f.read(8))[0] & 0x00FF_FFFF_FFFF_FE00


def _poke(path: str, offset: int, fmt: str, *values: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def qemu_img_check(path: str) -> int:
    exe = shutil.which("qemu-img")
    if exe is None:
        pytest.fail("qemu-img is missing; `make test` installs it (Debian package qemu-utils)")
    return subprocess.run([exe, "check", path], capture_output=True).returncode


def test_compressed_descriptor_far_past_the_end(tmp_path):
    path = _image(tmp_path)
    l2 = _l2_offset(path)
    # cluster 4's descriptor: compressed (bit 62), host offset 2^45, the largest sector count
    shift = 62 - (16 - 8)
    _poke(path, l2 + 4 * 8, ">Q", (1 << 62) | (((1 << 8) - 1) << shift) | (1 << 45))
    code, out, err, rss, cpu = wirt("disk", "check", path)
    assert code == 2 and "exceeding the end of the file" in out, (out, err)
    bounded(rss, cpu)
    assert qemu_img_check(path) == 2
    code, _, err, rss, cpu = wirt("disk", "convert", "-O", "raw", path, str(tmp_path / "out.raw"))
    one_line_error(code, err)
    bounded(rss, cpu)


FLIPS = """
import sys, time
from wirt.errors import WirtError
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_check import check_image
raw, path = open(sys.argv[1], "rb").read(), sys.argv[2]
slowest = 0.0
for byte in range(104):
    for bit in range(8):
        b = bytearray(raw)
        b[byte] ^= 1 << bit
        open(path, "wb").write(b)
        t = time.process_time()
        try:
            with Qcow2Image(path, read_only=True, repair_dirty=False) as img:
                check_image(img)
                img.read(0, min(img.size, 1 << 20))
        except WirtError as exc:
            assert chr(10) not in str(exc), (byte, bit, str(exc))
        slowest = max(slowest, time.process_time() - t)
print(f"slowest {slowest:.3f}")
"""


def test_header_bit_flips_stay_bounded(tmp_path):
    """Every bit of the version 3 header flipped in turn: opened, checked and read, or refused
    with a WirtError, in bounded memory and time (a flipped l1_size once made numpy ask for
    843 GiB)."""
    base = _image(tmp_path)
    code, out, err, rss, cpu = wirt_python(FLIPS, base, str(tmp_path / "flip.qcow2"))
    assert code == 0, err[-2000:]
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"
    assert float(out.split()[-1]) < CPU_LIMIT, out


def test_backing_chain_deeper_than_the_limit(tmp_path):
    # c000 <- c001 <- ... : each overlay is a copy of c001 with its backing name patched
    # (creating one through wirt or qemu-img would open the chain below, which is the point)
    create_qcow2(str(tmp_path / "c000.qcow2"), 1 << 20)
    create_qcow2(str(tmp_path / "c001.qcow2"), 1 << 20, backing="c000.qcow2", backing_format="qcow2")
    template = (tmp_path / "c001.qcow2").read_bytes()
    at = template.index(b"c000.qcow2")
    for i in range(2, MAX_CHAIN + 45):
        name = f"c{i - 1:03d}.qcow2".encode()
        (tmp_path / f"c{i:03d}.qcow2").write_bytes(template[:at] + name + template[at + len(name):])
    prev = tmp_path / f"c{MAX_CHAIN + 44:03d}.qcow2"
    code, _, err, rss, cpu = wirt("disk", "info", str(prev))
    one_line_error(code, err)
    assert f"deeper than {MAX_CHAIN}" in err
    bounded(rss, cpu)
    # exactly at the limit it opens (no RecursionError on the way)
    ok = tmp_path / f"c{MAX_CHAIN:03d}.qcow2"
    code, out, err, rss, cpu = wirt("disk", "info", str(ok))
    assert code == 0, err


@pytest.mark.parametrize("fmt", ["raw", None])
def test_unreadable_backing_file(tmp_path, fmt):
    """/proc/self/mem is a regular file whose reads fail (EIO). As a raw backing file of size 0 it
    is never read (handled: zeros); probed for its format, the read fails: one line."""
    path = str(tmp_path / "top.qcow2")
    create_qcow2(path, 1 << 20, backing="/proc/self/mem", backing_format="raw")
    if fmt is None:  # hide the backing-format extension (unknown ones are skipped): wirt probes the file
        with open(path, "r+b") as f:
            at = f.read(CS).find(struct.pack(">I", 0xE2792ACA), 0x68)
            assert at > 0
            f.seek(at)
            f.write(struct.pack(">I", 0x7E57_0000))
    for argv in (("disk", "info", path), ("disk", "convert", "-O", "raw", path, str(tmp_path / "out.raw"))):
        code, _, err, rss, cpu = wirt(*argv)
        if fmt is None:
            one_line_error(code, err)
            assert "/proc/self/mem: cannot read" in err
        else:
            assert code == 0 and not err
        bounded(rss, cpu)


def test_reserved_bits_in_l2_entries_are_found(tmp_path):
    path = _image(tmp_path)
    assert wirt("disk", "check", path)[0] == 0
    l2 = _l2_offset(path)
    with open(path, "rb") as f:
        f.seek(l2)
        (entry,) = struct.unpack(">Q", f.read(8))
    for bit in (1, 8, 56, 61):
        _poke(path, l2, ">Q", entry | (1 << bit))
        assert qemu_img_check(path) == 2
        code, out, err, rss, cpu = wirt("disk", "check", path)
        assert code == 2 and "reserved bits" in out, (bit, out, err)
        bounded(rss, cpu)


@pytest.mark.parametrize("value", [0x20, 1 << 58, 1 << 63])
def test_bad_refcount_table_entries_are_found(tmp_path, value):
    """A refcount table entry past the ones in use, with reserved bits 0-8 set or an offset in
    bits 56-63 (where an L1 or L2 entry has flags, a refcount table entry has offset bits): qemu-img
    check reports it, so must wirt disk check."""
    path = _image(tmp_path)
    _poke(path, CS + 8 * 2000, ">Q", value)  # the refcount table is the image's second cluster
    assert qemu_img_check(path) == 2
    code, out, err, rss, cpu = wirt("disk", "check", path)
    assert code == 2 and "refcount" in out and "ERROR" in out, (out, err)
    bounded(rss, cpu)


def test_l1_entry_with_copied_flag_and_no_table_is_found(tmp_path):
    """An L1 entry holding only the COPIED flag: reads treat it as unallocated, qemu-img check reads
    the header as its L2 table and finds errors; wirt disk check reports it as an error too."""
    path = _image(tmp_path)
    _poke(path, L1_OFF, ">Q", 1 << 63)  # its L2 table is dropped: leaked, as qemu-img says too
    assert qemu_img_check(path) == 2
    code, out, err, rss, cpu = wirt("disk", "check", path)
    assert code == 2 and "COPIED flag but no L2 table" in out, (out, err)
    bounded(rss, cpu)


def test_one_l2_table_named_by_every_l1_entry(tmp_path):
    """A file of a few clusters whose L1 table names one L2 table 8192 times (4 TiB of claimed
    data): the check reads that table once and counts it 8192 times, in memory bounded by the
    file, not by what the tables claim (it took 560 MiB)."""
    path = str(tmp_path / "same-l2.qcow2")
    create_qcow2(path, 1 << 20, cluster_size=CS)
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, b"x" * CS)
    raw = bytearray(open(path, "rb").read())
    l2 = struct.unpack(">Q", raw[L1_OFF:L1_OFF + 8])[0]
    n = CS // 8
    struct.pack_into(">Q", raw, 24, n * n * CS)  # virtual size: one full L1 cluster of L2 tables
    struct.pack_into(">I", raw, 36, n)           # l1_size
    for k in range(n):
        struct.pack_into(">Q", raw, L1_OFF + 8 * k, l2)
    open(path, "wb").write(raw)
    assert qemu_img_check(path) == 2
    code, out, err, rss, cpu = wirt("disk", "check", path)
    assert code == 2 and f"reference={n}" in out, (out[-2000:], err)
    bounded(rss, cpu)


def test_image_truncated_inside_its_metadata(tmp_path):
    """Wherever the file is cut, if qemu-img check finds errors, so does `wirt disk check` (an
    error report, or a one-line refusal to open the image), within the time and memory bounds."""
    path = _image(tmp_path)
    full = open(path, "rb").read()
    found = 0
    for cut in [CS + 8, 2 * CS + 16, 3 * CS + 4, *range(4 * CS, len(full), CS // 2)]:
        cut_path = str(tmp_path / f"cut-{cut:x}.qcow2")
        open(cut_path, "wb").write(full[:cut])
        if qemu_img_check(cut_path) == 0:
            continue
        found += 1
        code, out, err, rss, cpu = wirt("disk", "check", cut_path)
        assert code == 2, f"cut at {cut:#x}: qemu-img check finds errors, wirt disk check: {out} {err}"
        if err:
            one_line_error(code, err)
        else:
            assert "ERROR" in out, out
        bounded(rss, cpu)
    assert found >= 3
