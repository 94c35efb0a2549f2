"""virtio-net transmit (virtio 1.2 §5.1.6.2) compiled with numba: the frames of a batch of
chains gathered out of guest RAM, their checksums completed, in one nogil call.

`gather` takes the ring walk's output (`ringwalk.pop_chains`: each chain's RAM segments, the
device-readable ones first) and, for each chain, reads the 12-byte `virtio_net_hdr_v1` from
the start of its readable bytes, copies the rest (the Ethernet frame) into one output buffer
and, where the header asks for it (VIRTIO_NET_HDR_F_NEEDS_CSUM), stores the Internet checksum
(RFC 1071) of the frame from csum_start on at csum_start + csum_offset, over the partial sum of
the pseudo-header the driver left there. The segments' offsets were checked against guest RAM
by the walk; every write into the output buffer is checked against its size here.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["gather", "warm", "HDR_LEN"]

HDR_LEN = 12  # struct virtio_net_hdr_v1 (§5.1.6)
_F_NEEDS_CSUM = 1  # §5.1.6 virtio_net_hdr flags


@intrinsic
def _copy(typingctx, dst, dst_at, src, src_at, n):
    """dst[dst_at:dst_at + n] = src[src_at:src_at + n] for 1-D uint8 arrays, as one llvm.memcpy
    (numba's slice copy and a plain loop both ran at 1-2 bytes a nanosecond here). The caller
    has checked both ranges."""
    sig = types.void(dst, dst_at, src, src_at, n)

    def codegen(context, builder, signature, args):
        d, d_at, s, s_at, count = args
        darr = context.make_array(signature.args[0])(context, builder, d)
        sarr = context.make_array(signature.args[2])(context, builder, s)
        cgutils.raw_memcpy(builder, builder.gep(darr.data, [d_at]), builder.gep(sarr.data, [s_at]), count, 1)

    return sig, codegen


@njit(cache=True, nogil=True)
def _checksum(out, out32, start, end):
    """RFC 1071 §4.1: the ones' complement sum of out[start:end] as big-endian 16-bit words
    (an odd last byte padded with zero), folded to 16 bits. Summed as little-endian 32-bit
    words of `out32` (the same buffer) where aligned, which folds to the same sum up to a byte
    swap (§2(B), byte order independence): a byte at an even address counts 1 and at an odd
    one 256 that way, so the sum is swapped when `start` is even."""
    total = np.uint64(0)
    i = start
    while i < end and i & 3:
        total += np.uint64(out[i]) << np.uint64(8 * (i & 1))
        i += 1
    w_end = end >> 2
    for w in range(i >> 2, w_end):
        total += np.uint64(out32[w])
    i = max(i, w_end << 2)
    while i < end:
        total += np.uint64(out[i]) << np.uint64(8 * (i & 1))
        i += 1
    while total >> np.uint64(16):
        total = (total & np.uint64(0xFFFF)) + (total >> np.uint64(16))
    s = np.int64(total)
    if start & 1 == 0:
        s = ((s & 0xFF) << 8) | (s >> 8)
    return s


@njit(cache=True, nogil=True)
def gather(ram, seg_off, seg_len, starts, nread, nbytes, n, max_frame, out, out32, res):
    """Frames of chains 0..n-1 of a walk into `out`, one after another: res[2k], res[2k+1]
    are frame k's start and end in `out`, or -1, -1 where the chain is dropped (no frame after
    the header, a frame above max_frame bytes, or a checksum position outside the frame).
    `out` must hold the readable bytes of all n chains; `out32` is the same buffer seen as
    uint32 (its length a multiple of 4). Returns the bytes used in `out`."""
    hdr = np.zeros(HDR_LEN, dtype=np.uint8)
    pos = 0
    for k in range(n):
        res[2 * k] = -1
        res[2 * k + 1] = -1
        length = nbytes[2 * k] - HDR_LEN
        if length <= 0 or length > max_frame or pos + length > out.shape[0]:
            continue
        p = pos
        h = 0
        for j in range(starts[k], starts[k] + nread[k]):
            o = seg_off[j]
            ln = seg_len[j]
            while h < HDR_LEN and ln > 0:  # the header may span buffers (§5.1.6.2)
                hdr[h] = ram[o]
                h += 1
                o += 1
                ln -= 1
            if ln > 0:
                _copy(out, p, ram, o, ln)
                p += ln
        if hdr[0] & _F_NEEDS_CSUM:
            cstart = np.int64(hdr[6]) | (np.int64(hdr[7]) << 8)
            at = cstart + (np.int64(hdr[8]) | (np.int64(hdr[9]) << 8))
            if at + 2 > length:
                continue  # the checksum's place lies outside the frame: drop it
            s = _checksum(out, out32, pos + cstart, p)
            s = ~s & 0xFFFF
            if s == 0:
                s = 0xFFFF  # a computed 0 goes out as 0xFFFF (RFC 768: UDP's 0 means "none")
            out[pos + at] = s >> 8
            out[pos + at + 1] = s & 0xFF
        res[2 * k] = pos
        res[2 * k + 1] = p
        pos = p
    return pos


_warm = False


def warm() -> None:
    """Load (or compile, once) `gather` now, while the machine is built, rather than at the
    guest's first transmit (see virtqueue.Virtqueue: LLVM must not run beside the translation
    tier's compile thread); a no-op after the first call."""
    global _warm
    if _warm:
        return
    _warm = True
    one = np.zeros(1, dtype=np.int64)
    gather(np.zeros(64, dtype=np.uint8), one, one.copy(), np.zeros(2, dtype=np.int64), one.copy(),
           np.zeros(2, dtype=np.int64), 0, 1, np.zeros(4, dtype=np.uint8), np.zeros(1, dtype=np.uint32),
           np.zeros(2, dtype=np.int64))
