/* wirt's demo program: greets over HTIF, counts primes below 10000 and exits 0. */
#include "htif.h"

int main(void)
{
    static unsigned char composite[10000];
    unsigned count = 0;
    for (unsigned i = 2; i < 10000; i++) {
        if (composite[i]) continue;
        count++;
        for (unsigned j = i * i; j < 10000; j += i) composite[j] = 1;
    }
    puts_("Hello from a RISC-V program running on wirt!\n");
    puts_("primes below 10000: ");
    putnum(count);
    putch('\n');
    return count == 1229 ? 0 : 1;
}
