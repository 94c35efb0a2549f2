/* diskio: block-device throughput inside a riscv64 Linux guest, for bench/disk.py.
 *
 *   diskio DEVICE SIZE_MIB RANDOM_SECONDS
 *
 * With O_DIRECT (no guest page cache: every request reaches the virtio-blk device) and one
 * request in flight, it runs four phases on the first SIZE_MIB MiB of DEVICE and prints one
 * line per phase, `diskio PHASE BLOCK_BYTES OPS NANOSECONDS`:
 *   seqwrite  1 MiB blocks over the region, then fsync (a virtio-blk FLUSH request)
 *   seqread   1 MiB blocks over the region
 *   randread  4 KiB blocks at random 4 KiB-aligned offsets, for RANDOM_SECONDS
 *   randwrite 4 KiB blocks at random offsets for RANDOM_SECONDS, then fsync
 * (`diskio start` comes first.) Time is CLOCK_MONOTONIC. No libc: system calls through guestsys.h.
 */

#define PROG "diskio"
#include "guestsys.h"

#define SYS_openat 56
#define SYS_pread64 67
#define SYS_pwrite64 68
#define SYS_fsync 82
#define SYS_clock_gettime 113

#define AT_FDCWD (-100)
#define O_RDWR 2
#define O_DIRECT 040000 /* asm-generic/fcntl.h */
#define CLOCK_MONOTONIC 1
#define MIB (1UL << 20)

static char buf[MIB] __attribute__((aligned(4096)));

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
    sys6(SYS_close, fd, 0, 0, 0, 0, 0);
    return 0;
}
