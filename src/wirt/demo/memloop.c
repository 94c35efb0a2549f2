/* The memory-bound benchmark for bench/mips.py: a pointer chase through a shuffled list and
 * strided sums over 4 MiB, larger than the host's L2 and the guest TLB's reach.
 * ROUNDS is set at build time. Prints a checksum so every run is verified. */
#include "htif.h"

#ifndef ROUNDS
#define ROUNDS 10
#endif

#define N (1 << 19)   /* 512 Ki entries of 8 bytes: 4 MiB */
static uint64_t next[N];

int main(void)
{
    uint64_t sum = 0;
    uint32_t x = 88172645u;
    for (uint32_t i = 0; i < N; i++)
        next[i] = i;
    for (uint32_t i = N - 1; i > 0; i--) {   /* Sattolo's shuffle: one cycle through all */
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        uint32_t j = x % i;
        uint64_t t = next[i]; next[i] = next[j]; next[j] = t;
    }
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t p = r;
        for (int i = 0; i < N / 4; i++)
            p = next[p];
        sum += p;
        for (int stride = 1; stride <= 512; stride <<= 3)
            for (uint32_t i = 0; i < N; i += stride)
                sum += next[i];
    }
    puts_("checksum ");
    putnum(sum);
    putch('\n');
    return 0;
}
