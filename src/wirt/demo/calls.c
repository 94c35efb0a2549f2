/* The call-heavy benchmark for bench/mips.py: small functions that call each other across
 * functions, as compiled C programs are (a linked list walked, searched and reversed, a CRC fed a
 * byte per call, a table-driven state machine and a small matrix product, each function kept
 * out of line). Loops are short and control leaves each function after a few dozen
 * instructions, so what counts is the cost of calls, returns and jumps between translated
 * code, not one hot loop. ROUNDS is set at build time. Prints a checksum. */
#include "htif.h"

#ifndef ROUNDS
#define ROUNDS 20
#endif

/* Out of line, where the linker puts them: some calls stay on a page, some cross one. */
#define NOINLINE __attribute__((noinline))

struct node { struct node *next; int32_t key; int32_t val; };

#define NODES 256
static struct node pool[NODES];

NOINLINE static struct node *list_build(uint32_t seed)
{
    struct node *head = 0;
    for (int i = 0; i < NODES; i++) {
        seed = seed * 1103515245u + 12345u;
        pool[i].key = (int32_t)((seed >> 8) & 1023);
        pool[i].val = i;
        pool[i].next = head;
        head = &pool[i];
    }
    return head;
}

NOINLINE static struct node *list_find(struct node *n, int32_t key)
{
    while (n && n->key != key)
        n = n->next;
    return n;
}

NOINLINE static struct node *list_reverse(struct node *n)
{
    struct node *rev = 0;
    while (n) {
        struct node *next = n->next;
        n->next = rev;
        rev = n;
        n = next;
    }
    return rev;
}

NOINLINE static uint16_t crc_byte(uint8_t b, uint16_t crc)
{
    for (int i = 0; i < 8; i++) {
        uint16_t mix = (uint16_t)((crc ^ b) & 1);
        crc >>= 1;
        if (mix)
            crc ^= 0xA001;
        b >>= 1;
    }
    return crc;
}

NOINLINE static uint16_t crc_word(uint32_t w, uint16_t crc)
{
    for (int i = 0; i < 4; i++)
        crc = crc_byte((uint8_t)(w >> (8 * i)), crc);
    return crc;
}

enum { S_START, S_INT, S_FRAC, S_EXP, S_SIGN, S_BAD, S_N };

NOINLINE static int state_next(int s, char c)
{
    int digit = c >= '0' && c <= '9';
    switch (s) {
    case S_START: return digit ? S_INT : (c == '-' || c == '+') ? S_SIGN : S_BAD;
    case S_SIGN: return digit ? S_INT : S_BAD;
    case S_INT: return digit ? S_INT : c == '.' ? S_FRAC : (c == 'e' || c == 'E') ? S_EXP : S_BAD;
    case S_FRAC: return digit ? S_FRAC : (c == 'e' || c == 'E') ? S_EXP : S_BAD;
    case S_EXP: return digit ? S_EXP : S_BAD;
    default: return S_BAD;
    }
}

NOINLINE static uint32_t scan(const char *text, uint32_t counts[S_N])
{
    uint32_t words = 0;
    int s = S_START;
    for (const char *p = text; *p; p++) {
        if (*p == ' ') {
            counts[s]++;
            words++;
            s = S_START;
        } else {
            s = state_next(s, *p);
        }
    }
    return words;
}

#define M 6
NOINLINE static int32_t dot(const int32_t *a, const int32_t *b, int stride)
{
    int32_t sum = 0;
    for (int k = 0; k < M; k++)
        sum += a[k] * b[k * stride];
    return sum;
}

NOINLINE static void matmul(int32_t c[M][M], int32_t a[M][M], int32_t b[M][M])
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++)
            c[i][j] = dot(a[i], &b[0][j], M);
}

static const char text[] = "12 -3.5 4e7 x9 +0.25 7. 1e 300 -0 2.5e-3 abc 42 ";

int main(void)
{
    uint64_t sum = 0;
    uint16_t crc = 0xFFFF;
    uint32_t counts[S_N] = {0};
    int32_t a[M][M], b[M][M], c[M][M];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) {
            a[i][j] = i + j;
            b[i][j] = i - j;
        }
    for (int r = 0; r < ROUNDS; r++) {
        struct node *head = list_build((uint32_t)r);
        for (int k = 0; k < 16; k++) {
            struct node *n = list_find(head, (r * 7 + k * 61) & 1023);
            sum += n ? (uint64_t)n->val : 1;
        }
        head = list_reverse(head);
        for (struct node *n = head; n; n = n->next)
            crc = crc_word((uint32_t)n->key << 8 | (uint32_t)n->val, crc);
        sum += scan(text, counts);
        a[r % M][(r / M) % M] ^= crc & 15;
        matmul(c, a, b);
        sum += (uint32_t)c[r % M][(r + 1) % M];
    }
    for (int s = 0; s < S_N; s++)
        sum = sum * 31 + counts[s];
    puts_("calls checksum ");
    putnum(sum ^ crc);
    putch('\n');
    return 0;
}
