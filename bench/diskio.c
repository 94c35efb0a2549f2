/* diskio: block-device throughput inside a riscv64 Linux guest, for bench/disk.py.
 *
 *   diskio DEVICE SIZE_MIB RANDOM_SECONDS
 *
 * With O_DIRECT (no guest page cache: every request reaches the virtio-blk device) and one
 * request in flight (eight in the last phase), it runs four phases on the first SIZE_MIB MiB of DEVICE and prints one
 * line per phase, `diskio PHASE BLOCK_BYTES OPS NANOSECONDS`:
 *   seqwrite  1 MiB blocks over the region, then fsync (a virtio-blk FLUSH request)
 *   seqread   1 MiB blocks over the region
 *   randread  4 KiB blocks at random 4 KiB-aligned offsets, for RANDOM_SECONDS
 *   randwrite 4 KiB blocks at random offsets for RANDOM_SECONDS, then fsync
 *   mixed     4 KiB blocks at random offsets, 70 % reads / 30 % writes, 8 in flight (Linux
 *             native AIO), for RANDOM_SECONDS, then fsync
 * (`diskio start` comes first.) Time is CLOCK_MONOTONIC. No libc: system calls through guestsys.h.
 */

#define PROG "diskio"
#include "guestsys.h"

#define SYS_openat 56
#define SYS_pread64 67
#define SYS_pwrite64 68
#define SYS_fsync 82
#define SYS_clock_gettime 113
#define SYS_io_setup 0 /* Linux native AIO: O_DIRECT requests in flight together */
#define SYS_io_submit 2
#define SYS_io_getevents 4

#define AT_FDCWD (-100)
#define O_RDWR 2
#define O_DIRECT 040000 /* asm-generic/fcntl.h */
#define CLOCK_MONOTONIC 1
#define MIB (1UL << 20)

static char buf[MIB] __attribute__((aligned(4096)));

#define DEPTH 8
struct iocb { /* linux/aio_abi.h, little-endian 64-bit layout */
    u64 data;
    unsigned int key, rw_flags;
    unsigned short opcode;
    short reqprio;
    unsigned int fildes;
    u64 buf, nbytes;
    i64 offset;
    u64 reserved2;
    unsigned int flags, resfd;
};
struct io_event {
    u64 data, obj;
    i64 res, res2;
};
#define IOCB_CMD_PREAD 0
#define IOCB_CMD_PWRITE 1

static u64 parse(const char *s) {
    u64 v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0');
    return v;
}

static u64 now_ns(void) {
    i64 ts[2];
    sys6(SYS_clock_gettime, CLOCK_MONOTONIC, (i64)ts, 0, 0, 0, 0);
    return (u64)ts[0] * 1000000000UL + (u64)ts[1];
}

static void report(const char *phase, u64 block, u64 ops, u64 ns) {
    put("diskio ");
    put(phase);
    put(" ");
    put_u64(block);
    put(" ");
    put_u64(ops);
    put(" ");
    put_u64(ns);
    put("\n");
}

static u64 rng = 0x9E3779B97F4A7C15UL;

static u64 next(void) { /* xorshift64 */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void sequential(i64 fd, u64 size, int write) {
    u64 t0 = now_ns();
    for (u64 off = 0; off < size; off += MIB) {
        i64 r = write ? sys6(SYS_pwrite64, fd, (i64)buf, MIB, (i64)off, 0, 0)
                      : sys6(SYS_pread64, fd, (i64)buf, MIB, (i64)off, 0, 0);
        if (r != (i64)MIB) die(write ? "pwrite" : "pread", r < 0 ? r : -5);
    }
    if (write) {
        i64 r = sys6(SYS_fsync, fd, 0, 0, 0, 0, 0);
        if (r < 0) die("fsync", r);
    }
    report(write ? "seqwrite" : "seqread", MIB, size / MIB, now_ns() - t0);
}

static void random4k(i64 fd, u64 size, u64 seconds, int write) {
    u64 blocks = size / 4096, ops = 0;
    u64 t0 = now_ns(), end = t0 + seconds * 1000000000UL, t = t0;
    while (t < end) {
        for (int i = 0; i < 16; i++, ops++) {
            i64 off = (i64)((next() % blocks) * 4096);
            i64 r = write ? sys6(SYS_pwrite64, fd, (i64)buf, 4096, off, 0, 0)
                          : sys6(SYS_pread64, fd, (i64)buf, 4096, off, 0, 0);
            if (r != 4096) die(write ? "pwrite" : "pread", r < 0 ? r : -5);
        }
        t = now_ns();
    }
    if (write) {
        i64 r = sys6(SYS_fsync, fd, 0, 0, 0, 0, 0);
        if (r < 0) die("fsync", r);
    }
    report(write ? "randwrite" : "randread", 4096, ops, now_ns() - t0);
}

/* Random 4 KiB requests, 70 % reads and 30 % writes, DEPTH in flight (fio's randrw,
 * rwmixread=70, iodepth=8, libaio), for `seconds`, then fsync. */
static void mixed(i64 fd, u64 size, u64 seconds) {
    static struct iocb cbs[DEPTH];
    static struct iocb *ptrs[DEPTH];
    static struct io_event events[DEPTH];
    u64 ctx = 0, blocks = size / 4096, ops = 0, inflight = 0;
    i64 r = sys6(SYS_io_setup, DEPTH, (i64)&ctx, 0, 0, 0, 0);
    if (r < 0) die("io_setup", r);
    u64 t0 = now_ns(), end = t0 + seconds * 1000000000UL;
    for (int i = 0; i < DEPTH; i++) ptrs[i] = &cbs[i];
    int nsub = DEPTH;
    for (;;) {
        for (int i = 0; i < nsub; i++) { /* refill the slots in ptrs[0..nsub) */
            struct iocb *cb = ptrs[i];
            u64 slot = (u64)(cb - cbs);
            cb->data = slot;
            cb->opcode = next() % 10 < 7 ? IOCB_CMD_PREAD : IOCB_CMD_PWRITE;
            cb->fildes = (unsigned int)fd;
            cb->buf = (u64)(buf + slot * 4096);
            cb->nbytes = 4096;
            cb->offset = (i64)((next() % blocks) * 4096);
        }
        if (nsub) {
            r = sys6(SYS_io_submit, (i64)ctx, nsub, (i64)ptrs, 0, 0, 0);
            if (r != nsub) die("io_submit", r < 0 ? r : -5);
            inflight += (u64)nsub;
        }
        r = sys6(SYS_io_getevents, (i64)ctx, 1, DEPTH, (i64)events, 0, 0);
        if (r < 0) die("io_getevents", r);
        int stop = now_ns() >= end;
        nsub = 0;
        for (int i = 0; i < r; i++) {
            if (events[i].res != 4096) die("aio", events[i].res < 0 ? events[i].res : -5);
            ops++;
            inflight--;
            if (!stop) ptrs[nsub++] = &cbs[events[i].data];
        }
        if (stop && inflight == 0) break;
    }
    r = sys6(SYS_fsync, fd, 0, 0, 0, 0, 0);
    if (r < 0) die("fsync", r);
    report("mixed", 4096, ops, now_ns() - t0);
}

int cmain(i64 *sp) {
    i64 argc = sp[0];
    char **argv = (char **)(sp + 1);
    if (argc != 4) {
        put("usage: diskio DEVICE SIZE_MIB RANDOM_SECONDS\n");
        return 2;
    }
    u64 size = parse(argv[2]) * MIB, seconds = parse(argv[3]);
    for (u64 i = 0; i < MIB; i++) buf[i] = (char)(i * 131 + 7); /* not zeros: no shortcut anywhere */
    i64 fd = sys6(SYS_openat, AT_FDCWD, (i64)argv[1], O_RDWR | O_DIRECT, 0, 0, 0);
    if (fd < 0) die("open", fd);
    put("diskio start\n"); /* opens the first phase for bench/ioprofile.py */
    sequential(fd, size, 1);
    sequential(fd, size, 0);
    random4k(fd, size, seconds, 0);
    random4k(fd, size, seconds, 1);
    mixed(fd, size, seconds);
    sys6(SYS_close, fd, 0, 0, 0, 0, 0);
    return 0;
}
