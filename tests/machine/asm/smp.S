/* A bare-metal program for a Machine with several harts (tests/machine/test_smp.py).
 * Every hart enters _start from the boot ROM with a0 = its hart id (mhartid). The host
 * writes the parameters (hart count, iterations) into `params` before the run; the program
 * leaves its counts there and hart 0 powers off through the test finisher when all are done.
 *   phase 1  message passing (hart 0 writes data then flag with fence w,w in between; hart 1
 *            reads flag, fence r,r, then data, and counts flag > data, which RVWMO forbids)
 *   IPI      hart 0 sends every other hart a machine software interrupt through the CLINT;
 *            they wait for it in WFI (as OpenSBI's HSM does), clear it and count themselves
 *   phase 2  amoadd.d of 1, ITER times per hart
 *   phase 3  an lr.d/sc.d increment loop, ITER times per hart
 *   phase 4  a test-and-set spinlock (amoswap.w.aq / amoswap.w.rl) around a plain ld/addi/sd
 *            increment, ITER times per hart
 */
#define P_HARTS   0
#define P_ITER    8
#define P_MP      16   /* message-passing rounds */
#define C_AMO     64
#define C_LRSC    72
#define C_LOCKED  80
#define C_MPBAD   88   /* reads that saw the flag without its data */
#define C_DONE    96
#define C_IPI     104  /* harts woken by an IPI */
#define CLINT     0x2000000
#define LOCK      128
#define MP_DATA   192
#define MP_FLAG   256
#define FINISHER  0x100000

    .section .text.init, "ax"
    .globl _start
_start:
    la s0, params
    ld s1, P_ITER(s0)

    /* phase 1: message passing between harts 0 and 1 */
    ld t0, P_HARTS(s0)
    li t1, 2
    blt t0, t1, ipi
    ld s2, P_MP(s0)
    addi s3, s0, MP_DATA
    addi s4, s0, MP_FLAG
    beqz a0, mp_writer
    li t1, 1
    bne a0, t1, ipi
    li s5, 0                      /* bad reads */
mp_reader:
    ld t2, 0(s4)                  /* flag */
    fence r, r
    ld t3, 0(s3)                  /* data */
    bgeu t3, t2, 1f
    addi s5, s5, 1
1:  bltu t2, s2, mp_reader
    sd s5, C_MPBAD(s0)
    j ipi
mp_writer:
    li t0, 1
1:  sd t0, 0(s3)                  /* data = k */
    fence w, w
    sd t0, 0(s4)                  /* flag = k */
    addi t0, t0, 1
    bleu t0, s2, 1b
    j ipi

ipi:
    li t0, CLINT
    bnez a0, ipi_wait
    ld t1, P_HARTS(s0)
    li t2, 1
1:  bgeu t2, t1, phase2
    slli t3, t2, 2
    add t3, t3, t0
    li t4, 1
    sw t4, 0(t3)                  /* msip[t2] = 1 */
    addi t2, t2, 1
    j 1b
ipi_wait:
    li t1, 8                      /* mie.MSIE: WFI wakes on it even with mstatus.MIE clear */
    csrs mie, t1
2:  wfi
    csrr t1, mip
    andi t1, t1, 8
    beqz t1, 2b
    slli t3, a0, 2
    add t3, t3, t0
    sw zero, 0(t3)                /* msip[hart] = 0 */
    li t1, 8
    csrc mie, t1
    addi t2, s0, C_IPI
    li t1, 1
    amoadd.d zero, t1, (t2)

phase2:
    mv t0, s1
    addi t2, s0, C_AMO
    li t1, 1
1:  amoadd.d zero, t1, (t2)
    addi t0, t0, -1
    bnez t0, 1b

    mv t0, s1
    addi t2, s0, C_LRSC
2:  lr.d t1, (t2)
    addi t1, t1, 1
    sc.d t3, t1, (t2)
    bnez t3, 2b
    addi t0, t0, -1
    bnez t0, 2b

    mv t0, s1
    addi t2, s0, LOCK
    addi t4, s0, C_LOCKED
    li t1, 1
3:  amoswap.w.aq t3, t1, (t2)
    bnez t3, 3b
    ld t5, 0(t4)
    addi t5, t5, 1
    sd t5, 0(t4)
    amoswap.w.rl zero, zero, (t2)
    addi t0, t0, -1
    bnez t0, 3b

    addi t2, s0, C_DONE
    li t1, 1
    amoadd.d zero, t1, (t2)
    bnez a0, park
    ld t0, P_HARTS(s0)
4:  ld t1, C_DONE(s0)
    bne t1, t0, 4b
    li t0, FINISHER
    li t1, 0x5555
    sw t1, 0(t0)
park:
    wfi
    j park

    .section .data
    .align 12
    .globl params
params:
    .zero 4096
