/* HTIF console output (device 1, command 1: putchar), the Spike convention. */
#include <stdint.h>
extern volatile uint64_t tohost, fromhost;

static void putch(char c)
{
    while (tohost) ;
    tohost = (1ULL << 56) | (1ULL << 48) | (unsigned char)c;
}

static void puts_(const char *s)
{
    while (*s) putch(*s++);
}

static void putnum(uint64_t v)
{
    char buf[24];
    int i = 0;
    do { buf[i++] = '0' + v % 10; v /= 10; } while (v);
    while (i) putch(buf[--i]);
}
