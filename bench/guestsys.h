/* guestsys.h: the freestanding helpers of the guest benchmark programs (diskio.c, netio.c).
 *
 * No libc: Linux system calls through `ecall` (RISC-V Linux ABI: a7 is the call number from
 * asm-generic/unistd.h, a0-a5 the arguments, a0 the result or -errno), so the bare-metal cross
 * compiler riscv64-unknown-elf-gcc builds them as static Linux programs. A program defines
 * PROG (its name, for error messages) before including this file, and its entry point
 * `int cmain(i64 *sp)` (sp: the initial stack, argc then the argv pointers).
 */

typedef unsigned long u64;
typedef long i64;

#define SYS_close 57
#define SYS_write 64
#define SYS_exit_group 94

static i64 sys6(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e, i64 f) {
    register i64 a0 __asm__("a0") = a;
    register i64 a1 __asm__("a1") = b;
    register i64 a2 __asm__("a2") = c;
    register i64 a3 __asm__("a3") = d;
    register i64 a4 __asm__("a4") = e;
    register i64 a5 __asm__("a5") = f;
    register i64 a7 __asm__("a7") = n;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5), "r"(a7) : "memory");
    return a0;
}

static u64 len(const char *s) {
    u64 n = 0;
    while (s[n]) n++;
    return n;
}

static void put(const char *s) { sys6(SYS_write, 1, (i64)s, (i64)len(s), 0, 0, 0); }

static void put_u64(u64 v) {
    char tmp[24];
    int i = 23;
    tmp[i] = 0;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(tmp + i);
}

static void die(const char *what, i64 err) {
    put(PROG ": ");
    put(what);
    put(" failed, errno ");
    put_u64((u64)-err);
    put("\n");
    sys6(SYS_exit_group, 1, 0, 0, 0, 0, 0);
}

int cmain(i64 *sp);

/* The process entry: the kernel leaves argc, argv... at sp; cmain's result is the exit status. */
__asm__(".globl _start\n"
        "_start:\n"
        "  mv a0, sp\n"
        "  andi sp, sp, -16\n"
        "  call cmain\n"
        "  li a7, 94\n" /* exit_group(cmain's result) */
        "  ecall\n");
