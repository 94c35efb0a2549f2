/* The floating-point benchmark for bench/mips.py: double and single arithmetic
 * (add, mul, div, sqrt-free fused multiply-add chains) in a loop; prints a checksum. */
#include "htif.h"

#ifndef ROUNDS
#define ROUNDS 200
#endif

static double vec[1024];
static float fvec[1024];

int main(void)
{
    for (int i = 0; i < 1024; i++) { vec[i] = 1.0 + i * 0.001; fvec[i] = 0.5f + i * 0.0005f; }
    double acc = 0.0;
    float facc = 0.0f;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < 1024; i++) {
            double v = vec[i];
            acc = acc * 0.999 + v * v;       /* fmadd.d */
            vec[i] = v + 1.0 / (v + 3.0);     /* fadd.d, fdiv.d */
            float f = fvec[i];
            facc += f * 1.5f - 0.25f;         /* fmsub.s / fadd.s */
            fvec[i] = f * 0.75f + 0.125f;
        }
    }
    puts_("checksum ");
    putnum((uint64_t)acc);
    putch(' ');
    putnum((uint64_t)facc);
    putch('\n');
    return 0;
}
