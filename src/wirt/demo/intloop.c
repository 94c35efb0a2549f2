/* The integer benchmark for bench/mips.py: arithmetic, loads and stores, branches.
 * ROUNDS is set at build time. Prints a checksum so every run is verified. */
#include "htif.h"

#ifndef ROUNDS
#define ROUNDS 200
#endif

static uint32_t table[4096];

int main(void)
{
    uint64_t sum = 0;
    uint32_t x = 12345;
    for (int r = 0; r < ROUNDS; r++) {
        /* fill with a xorshift sequence: shifts, xors, stores */
        for (int i = 0; i < 4096; i++) {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            table[i] = x;
        }
        /* insertion-sort a window: loads, compares, branches */
        for (int i = 1; i < 64; i++) {
            uint32_t v = table[i];
            int j = i - 1;
            while (j >= 0 && table[j] > v) { table[j + 1] = table[j]; j--; }
            table[j + 1] = v;
        }
        /* mix: multiplies, divides, data-dependent branches */
        for (int i = 0; i < 4096; i++) {
            uint32_t v = table[i];
            if (v & 1) sum += v * 3u; else sum ^= v / 7u;
        }
    }
    puts_("checksum ");
    putnum(sum);
    putch('\n');
    return 0;
}
