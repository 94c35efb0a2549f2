/* The branch-heavy benchmark for bench/mips.py: a bytecode interpreter, quicksort, a hash
 * table and a lexer: indirect jumps, calls, unpredictable branches, small functions.
 * ROUNDS is set at build time. Prints a checksum so every run is verified. */
#include "htif.h"

#ifndef ROUNDS
#define ROUNDS 20
#endif

enum { PUSH, ADD, SUB, MUL, DUP, SWAP, JNZ, DEC, POP, HALT };

/* count down from n, accumulating a polynomial: a loop of 9 bytecodes per iteration */
static const uint8_t prog[] = {
    PUSH, 0, PUSH, 200, /* acc n */
    DUP, SWAP, POP, SWAP, DUP, MUL, ADD, /* acc+acc*acc? keeps the switch busy */
    PUSH, 7, SUB, SWAP, DEC, DUP, JNZ, 4, HALT,
};

static int64_t run_vm(int64_t seed)
{
    int64_t st[64];
    int sp = 0, pc = 0;
    for (;;) {
        switch (prog[pc++]) {
        case PUSH: st[sp++] = prog[pc++] + seed; break;
        case ADD: sp--; st[sp - 1] += st[sp]; break;
        case SUB: sp--; st[sp - 1] -= st[sp]; break;
        case MUL: sp--; st[sp - 1] = (st[sp - 1] * st[sp]) & 0xFFFFF; break;
        case DUP: st[sp] = st[sp - 1]; sp++; break;
        case SWAP: { int64_t t = st[sp - 1]; st[sp - 1] = st[sp - 2]; st[sp - 2] = t; } break;
        case JNZ: if (st[--sp] > seed) pc = prog[pc]; else pc++; break;
        case DEC: st[sp - 1]--; break;
        case POP: sp--; break;
        default: return st[sp - 1] + sp;
        }
        if (sp < 2) { st[sp++] = 1; }
        if (sp > 60) sp = 2;
    }
}

static uint32_t arr[2048];

static void quicksort(uint32_t *a, int lo, int hi)
{
    while (lo < hi) {
        uint32_t p = a[(lo + hi) >> 1];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { uint32_t t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (j - lo < hi - i) { quicksort(a, lo, j); lo = i; }
        else { quicksort(a, i, hi); hi = j; }
    }
}

#define HSIZE 1024
static uint32_t hkeys[HSIZE], hvals[HSIZE];

static uint32_t hash_insert(uint32_t k)
{
    uint32_t h = (k * 2654435761u) & (HSIZE - 1);
    while (hkeys[h] && hkeys[h] != k) h = (h + 1) & (HSIZE - 1);
    hkeys[h] = k;
    return ++hvals[h];
}

static const char text[] =
    "int main(void) { return fib(30) + 0x2a * (b - 17); } /* comment */ while (x < 10) x += 3;"
    " static const char *s = \"string\"; for (i = 0; i < n; i++) sum ^= a[i] << 2;";

static uint32_t lex(void)
{
    uint32_t tokens = 0, idents = 0, nums = 0;
    const char *p = text;
    while (*p) {
        char c = *p;
        if (c == ' ') { p++; continue; }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
            uint32_t h = 0;
            while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || (*p >= '0' && *p <= '9'))
                h = h * 31 + *p++;
            idents += hash_insert(h | 1) & 1;
        } else if (c >= '0' && c <= '9') {
            while ((*p >= '0' && *p <= '9') || *p == 'x' || (*p >= 'a' && *p <= 'f')) p++;
            nums++;
        } else if (c == '/' && p[1] == '*') {
            p += 2;
            while (*p && !(*p == '*' && p[1] == '/')) p++;
            if (*p) p += 2;
        } else if (c == '"') {
            p++;
            while (*p && *p != '"') p++;
            if (*p) p++;
        } else {
            p++;
        }
        tokens++;
    }
    return tokens * 7 + idents * 3 + nums;
}

int main(void)
{
    uint64_t sum = 0;
    uint32_t x = 2463534242u;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < 40; i++)
            sum += run_vm(i + r);
        for (int i = 0; i < 2048; i++) {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            arr[i] = x;
        }
        quicksort(arr, 0, 2047);
        sum += arr[r & 2047];
        for (int i = 0; i < 20; i++)
            sum += lex();
    }
    puts_("checksum ");
    putnum(sum);
    putch('\n');
    return 0;
}
