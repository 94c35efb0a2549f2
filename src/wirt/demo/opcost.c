/* One instruction repeated in an unrolled loop, for bench/mips.py's per-instruction cost:
 * OPKIND 0 = add (integer), 1 = fadd.d, 2 = fmul.d, 3 = fmadd.d, 4 = fdiv.d. */
#include "htif.h"

#ifndef ROUNDS
#define ROUNDS 1000
#endif
#ifndef OPKIND
#define OPKIND 0
#endif

#if OPKIND == 0
#define OP asm volatile("add %0, %0, %1" : "+r"(i) : "r"(j))
#elif OPKIND == 1
#define OP asm volatile("fadd.d %0, %0, %1" : "+f"(x) : "f"(y))
#elif OPKIND == 2
#define OP asm volatile("fmul.d %0, %0, %1" : "+f"(x) : "f"(y))
#elif OPKIND == 3
#define OP asm volatile("fmadd.d %0, %1, %2, %0" : "+f"(x) : "f"(y), "f"(y))
#else
#define OP asm volatile("fdiv.d %0, %0, %1" : "+f"(x) : "f"(y))
#endif

int main(void)
{
    long i = 0, j = 3;
    double x = 1.0, y = 1.0000001;
    for (long r = 0; r < ROUNDS * 1000L; r++) {
        OP; OP; OP; OP; OP; OP; OP; OP; OP; OP; OP; OP; OP; OP; OP; OP;
    }
    return (i == 12345 && x == 0.5) ? 1 : 0;
}
