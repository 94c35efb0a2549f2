/* wirt's own bare-metal test harness: M-mode start, HTIF exit, a default trap handler
 * that records the trap (mcause -> s10, mtval -> s11, count in s9) and skips the
 * trapping instruction. A test body is #included at BODY. */
#define CHECK(reg, val, num) li gp, num; li t6, val; bne reg, t6, fail
#define PASS j pass

    .section .text.init, "ax"
    .globl _start
_start:
    la t0, trap_handler
    csrw mtvec, t0
    li s9, 0
    li s10, -1
    li s11, -1
    li gp, 0
#include BODY
    j pass

    .align 2
trap_handler:
    csrr s10, mcause
    csrr s11, mtval
    addi s9, s9, 1
    csrr t5, mepc
    lhu t4, 0(t5)          /* skip the trapping instruction: 2 or 4 bytes */
    andi t4, t4, 3
    li t3, 3
    addi t5, t5, 2
    bne t4, t3, 1f
    addi t5, t5, 2
1:  csrw mepc, t5
    mret

pass:
    li a0, 1
    j write_tohost
fail:
    slli a0, gp, 1
    ori a0, a0, 1
write_tohost:
    la t0, tohost
    sd a0, 0(t0)
2:  j 2b

    .section .tohost, "aw", @progbits
    .align 6
    .globl tohost
tohost: .dword 0
    .size tohost, 8
    .align 6
    .globl fromhost
fromhost: .dword 0
    .size fromhost, 8

    .data
    .align 12
scratch: .fill 8192, 1, 0
