/* Bare-metal start for wirt's demo programs: stack, zeroed .bss, main(), HTIF exit. */
    .section .text.init, "ax"
    .globl _start
_start:
    li t0, 1 << 13          /* mstatus.FS = Initial: enable the FPU for programs that use it */
    csrs mstatus, t0
    la sp, _stack_top
    la t0, __bss_start
    la t1, _end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  call main
    slli a0, a0, 1
    ori a0, a0, 1
    la t0, tohost
    sd a0, 0(t0)
3:  j 3b

    .section .tohost, "aw", @progbits
    .align 6
    .globl tohost
tohost: .dword 0
    .size tohost, 8
    .align 6
    .globl fromhost
fromhost: .dword 0
    .size fromhost, 8
