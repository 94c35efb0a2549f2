/* smpwork: a CPU-bound parallel workload inside a riscv64 Linux guest, for bench/smp.py.
 *
 *   smpwork JOBS ITERATIONS
 *
 * Forks JOBS processes; each runs ITERATIONS rounds of an integer hash (multiply, xor, shift:
 * no memory traffic, no system calls), then exits. The parent waits for all and prints
 * `smpwork JOBS ITERATIONS NANOSECONDS CHECKSUM` (CLOCK_MONOTONIC; the checksum of the first
 * job, so the loop cannot be optimized away). The total work is the same on any number of
 * vCPUs; with N vCPUs up to N jobs run at once. No libc: system calls through guestsys.h.
 */

#define PROG "smpwork"
#include "guestsys.h"

#define SYS_clone 220
#define SYS_wait4 260
#define SYS_clock_gettime 113
#define SIGCHLD 17
#define CLOCK_MONOTONIC 1

struct timespec { i64 sec, nsec; };

static i64 now_ns(void) {
    struct timespec t;
    sys6(SYS_clock_gettime, CLOCK_MONOTONIC, (i64)&t, 0, 0, 0, 0);
    return t.sec * 1000000000L + t.nsec;
}

static u64 parse(const char *s) {
    u64 v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (u64)(*s++ - '0');
    return v;
}

static u64 work(u64 seed, u64 n) {
    u64 x = seed | 1;
    for (u64 i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x * 0x9E3779B97F4A7C15UL + i;
    }
    return x;
}

int cmain(i64 *sp) {
    if (sp[0] != 3) {
        put("usage: smpwork JOBS ITERATIONS\n");
        return 2;
    }
    u64 jobs = parse((const char *)sp[2]), n = parse((const char *)sp[3]);
    i64 t0 = now_ns();
    for (u64 j = 0; j < jobs; j++) {
        i64 pid = sys6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0); /* fork */
        if (pid < 0)
            die("fork", pid);
        if (pid == 0)
            return (int)(work(j + 1, n) & 0x7F);
    }
    int status = 0;
    u64 first = 0;
    for (u64 j = 0; j < jobs; j++) {
        i64 r = sys6(SYS_wait4, -1, (i64)&status, 0, 0, 0, 0);
        if (r < 0)
            die("wait4", r);
        if (j == 0)
            first = (u64)((status >> 8) & 0xFF);
    }
    i64 t1 = now_ns();
    put("smpwork ");
    put_u64(jobs);
    put(" ");
    put_u64(n);
    put(" ");
    put_u64((u64)(t1 - t0));
    put(" ");
    put_u64(first);
    put("\n");
    return 0;
}
