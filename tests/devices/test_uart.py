"""NS16550A: registers, FIFOs, interrupts and IIR priority, Linux 8250 probing, host I/O."""

import json
import threading

from wirt.devices.irq import IrqLine
from wirt.devices.uart import Uart16550

RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7

IIR_NO_INT, IIR_RLS, IIR_RDA, IIR_CTI, IIR_THRE, IIR_MSI = 0x01, 0x06, 0x04, 0x0C, 0x02, 0x00


def make():
    out = bytearray()
    irq = IrqLine()
    u = Uart16550(irq, on_output=out.append)
    return u, irq, out


def rd(u, reg):
    return u.read(reg, 1)


def wr(u, reg, v):
    u.write(reg, 1, v)


def iir_id(u):
    return rd(u, IIR) & 0x0F


# ---- plain registers --------------------------------------------------------------


def test_reset_values():
    u, irq, _ = make()
    assert rd(u, IER) == 0
    assert rd(u, IIR) == 0x01
    assert rd(u, LCR) == 0 and rd(u, MCR) == 0
    assert rd(u, LSR) == 0x60  # THRE | TEMT
    assert rd(u, MSR) & 0xF0 == 0xB0  # ready terminal: DCD, DSR, CTS
    assert not irq.level


def test_dlab_switches_divisor_latch():
    u, _, out = make()
    wr(u, IER, 0x05)
    wr(u, LCR, 0x83)
    wr(u, DLL, 0x0C)
    wr(u, DLM, 0x01)
    assert rd(u, DLL) == 0x0C and rd(u, DLM) == 0x01
    assert out == b""  # DLL write is not a transmit
    wr(u, LCR, 0x03)
    assert rd(u, IER) == 0x05 and rd(u, LCR) == 0x03
    wr(u, LCR, 0x83)
    assert rd(u, DLL) == 0x0C


def test_scratch_and_ier_width():
    u, _, _ = make()
    wr(u, SCR, 0xA5)
    assert rd(u, SCR) == 0xA5
    wr(u, IER, 0xFF)
    assert rd(u, IER) == 0x0F  # bits 4-7 are always 0 on a 16550A
    wr(u, MCR, 0xFF)
    assert rd(u, MCR) == 0x1F


def test_transmit_calls_on_output():
    u, _, out = make()
    for b in b"hello":
        wr(u, THR, b)
    assert out == b"hello"
    assert rd(u, LSR) & 0x60 == 0x60


def test_unmapped_offsets_and_wide_access():
    u, _, _ = make()
    assert u.read(0x10, 4) == 0
    u.write(0x10, 4, 0xFF)
    u.write(SCR, 4, 0x1234)
    assert u.read(SCR, 4) == 0x34


# ---- receive, FIFOs -----------------------------------------------------------------


def test_rx_fifo_holds_16_and_refills_from_host():
    u, _, _ = make()
    wr(u, FCR, 0x01)
    u.feed(bytes(range(40)))
    assert u.pending_input() == 40
    got = []
    while rd(u, LSR) & 0x01:
        got.append(rd(u, RBR))
    assert got == list(range(40))
    assert rd(u, LSR) & 0x03 == 0  # no overrun, nothing left
    assert rd(u, RBR) == 0


def test_no_input_lost_with_large_feed_in_non_fifo_mode():
    u, _, _ = make()
    data = bytes((i * 7) & 0xFF for i in range(100_000))
    u.feed(data[:50_000])
    u.feed(data[50_000:])
    got = bytearray()
    while rd(u, LSR) & 0x01:
        got.append(rd(u, RBR))
    assert bytes(got) == data


def test_feed_from_another_thread():
    u, irq, _ = make()
    wr(u, FCR, 0x01)
    wr(u, IER, 0x01)
    chunks = [bytes([i % 256]) * 100 for i in range(50)]

    def producer():
        for c in chunks:
            u.feed(c)

    t = threading.Thread(target=producer)
    t.start()
    got = bytearray()
    while t.is_alive() or rd(u, LSR) & 0x01:
        if rd(u, LSR) & 0x01:
            got.append(rd(u, RBR))
    t.join()
    while rd(u, LSR) & 0x01:
        got.append(rd(u, RBR))
    assert bytes(got) == b"".join(chunks)
    assert not irq.level


def test_fcr_rx_reset_and_fifo_toggle_discard_fifo_only():
    u, _, _ = make()
    wr(u, FCR, 0x01)
    u.feed(bytes(range(20)))
    wr(u, FCR, 0x03)  # RX reset: the 16 bytes in the FIFO go, 4 still on the wire arrive
    got = []
    while rd(u, LSR) & 0x01:
        got.append(rd(u, RBR))
    assert got == [16, 17, 18, 19]
    u.feed(b"ab")
    wr(u, FCR, 0x00)  # disabling FIFOs clears them
    assert rd(u, LSR) & 0x01 == 0
    assert rd(u, IIR) & 0xC0 == 0


def test_fifo_bits_in_iir():
    u, _, _ = make()
    wr(u, FCR, 0x01)
    assert rd(u, IIR) == 0xC1
    wr(u, FCR, 0xC7)  # trigger 14, resets self-clear
    assert rd(u, IIR) == 0xC1


# ---- interrupts ---------------------------------------------------------------------


def test_rx_data_available_interrupt_non_fifo():
    u, irq, _ = make()
    wr(u, IER, 0x01)
    assert not irq.level
    u.feed(b"xy")
    assert irq.level and iir_id(u) == IIR_RDA
    assert rd(u, RBR) == ord("x")
    assert irq.level  # 'y' moved into the holding register
    assert rd(u, RBR) == ord("y")
    assert not irq.level and iir_id(u) == IIR_NO_INT


def test_rx_trigger_level_and_character_timeout():
    u, irq, _ = make()
    wr(u, FCR, 0x81)  # FIFO on, trigger level 8
    wr(u, IER, 0x01)
    u.feed(b"abc")
    assert irq.level and iir_id(u) == IIR_CTI  # below trigger: timeout
    u.feed(b"defgh")
    assert iir_id(u) == IIR_RDA  # 8 bytes: at trigger
    rd(u, RBR)
    assert iir_id(u) == IIR_CTI
    while rd(u, LSR) & 1:
        rd(u, RBR)
    assert not irq.level


def test_thre_interrupt_semantics():
    u, irq, out = make()
    wr(u, IER, 0x02)  # rising edge of ETBEI while THR empty
    assert irq.level
    assert rd(u, IIR) == 0x02
    assert not irq.level  # IIR read that reports THRE clears it
    assert iir_id(u) == IIR_NO_INT
    wr(u, THR, ord("A"))  # THR empties at once -> THRE pending again
    assert irq.level and iir_id(u) == IIR_THRE
    wr(u, IER, 0x00)
    assert not irq.level
    wr(u, IER, 0x02)
    assert irq.level
    wr(u, IER, 0x03)  # no new edge: pending unchanged
    rd(u, IIR)
    wr(u, IER, 0x02)
    assert not irq.level
    assert out == b"A"


def test_thre_not_cleared_by_iir_read_when_not_reported():
    u, irq, _ = make()
    wr(u, IER, 0x03)
    u.feed(b"z")
    assert iir_id(u) == IIR_RDA  # higher priority than THRE
    assert iir_id(u) == IIR_RDA
    rd(u, RBR)
    assert iir_id(u) == IIR_THRE  # still pending
    assert iir_id(u) == IIR_NO_INT


def test_line_status_interrupt_on_overrun_has_top_priority():
    u, irq, _ = make()
    wr(u, FCR, 0x01)
    wr(u, MCR, 0x10)  # loopback
    wr(u, IER, 0x0F)
    for i in range(17):  # one more than the FIFO holds
        wr(u, THR, i)
    assert iir_id(u) == IIR_RLS
    lsr = rd(u, LSR)
    assert lsr & 0x03 == 0x03  # DR | OE
    assert rd(u, LSR) & 0x02 == 0  # OE clears on read
    assert iir_id(u) == IIR_RDA  # 16 >= trigger 1
    got = [rd(u, RBR) for _ in range(16)]
    assert got == list(range(16))  # the 17th byte was lost, FIFO kept the first 16


def test_modem_status_interrupt_lowest_priority():
    u, irq, _ = make()
    wr(u, MCR, 0x10)  # loopback: all modem inputs drop (delta bits set)
    rd(u, MSR)
    wr(u, IER, 0x08)
    assert not irq.level
    wr(u, MCR, 0x12)  # RTS -> CTS rises
    assert irq.level and iir_id(u) == IIR_MSI
    msr = rd(u, MSR)
    assert msr == 0x11  # CTS | DCTS
    assert not irq.level
    wr(u, MCR, 0x16)  # OUT1 -> RI rises: no delta (only the trailing edge counts)
    assert not irq.level and rd(u, MSR) == 0x50
    wr(u, IER, 0x0A)
    wr(u, MCR, 0x12)  # RI falls: trailing edge
    assert iir_id(u) == IIR_THRE  # THRE outranks modem status
    assert iir_id(u) == IIR_MSI
    assert rd(u, MSR) & 0x0F == 0x04  # TERI


def test_iir_full_priority_order():
    u, irq, _ = make()
    wr(u, FCR, 0x01)
    wr(u, MCR, 0x10)
    for i in range(17):
        wr(u, THR, i)  # RX data + overrun, THRE pending from writes
    wr(u, MCR, 0x13)  # modem delta
    wr(u, IER, 0x0F)
    seen = []
    seen.append(iir_id(u))
    rd(u, LSR)
    seen.append(iir_id(u))
    while rd(u, LSR) & 1:
        rd(u, RBR)
    seen.append(iir_id(u))  # reading IIR clears THRE
    seen.append(iir_id(u))
    rd(u, MSR)
    seen.append(iir_id(u))
    assert seen == [IIR_RLS, IIR_RDA, IIR_THRE, IIR_MSI, IIR_NO_INT]
    assert not irq.level


def test_loopback_does_not_output_and_holds_host_input():
    u, _, out = make()
    u.feed(b"host")
    wr(u, FCR, 0x07)  # clears FIFO (discarding 'h' that had arrived)
    u.feed(b"!")
    wr(u, MCR, 0x10)
    assert rd(u, LSR) & 1  # bytes that arrived before loopback remain readable
    while rd(u, LSR) & 1:
        rd(u, RBR)
    wr(u, THR, 0x55)
    assert out == b""
    assert rd(u, RBR) == 0x55
    u.feed(b"later")
    assert not rd(u, LSR) & 1  # receiver disconnected from the line
    wr(u, MCR, 0x00)
    got = bytearray()
    while rd(u, LSR) & 1:
        got.append(rd(u, RBR))
    assert got == b"later"


# ---- Linux 8250 probing ---------------------------------------------------------------


def linux_autoconfig(u):
    """The register dance of drivers/tty/serial/8250/8250_port.c autoconfig()."""
    # IER scratch test
    wr(u, IER, 0)
    s2 = rd(u, IER) & 0x0F
    wr(u, IER, 0x0F)
    s3 = rd(u, IER) & 0x0F
    wr(u, IER, 0)
    if s2 != 0 or s3 != 0x0F:
        return "none"
    # loopback test
    save_mcr = rd(u, MCR)
    wr(u, MCR, 0x10 | 0x0A)
    status = rd(u, MSR) & 0xF0
    wr(u, MCR, save_mcr)
    if status != 0x90:
        return "no-loopback"
    wr(u, LCR, 0xBF)
    wr(u, 2, 0)  # EFR on enhanced parts
    wr(u, LCR, 0)
    wr(u, FCR, 0x01)
    scratch = rd(u, IIR) >> 6
    if scratch != 3:
        return {0: "8250/16450", 1: "unknown", 2: "16550"}[scratch]
    # autoconfig_16550a
    wr(u, LCR, 0x80)
    if rd(u, 2) == 0:
        return "ST16650?"
    wr(u, LCR, 0xBF)
    if rd(u, 2) == 0:
        return "16650V2?"
    wr(u, LCR, 0)
    st1 = rd(u, MCR)
    wr(u, LCR, 0xE0)
    st2 = rd(u, 2)
    if not ((st2 ^ st1) & 0x10):
        wr(u, LCR, 0)
        wr(u, MCR, st1 ^ 0x10)
        wr(u, LCR, 0xE0)
        st2 = rd(u, 2)
        wr(u, LCR, 0)
        wr(u, MCR, st1)
        if (st2 ^ st1) & 0x10:
            return "NS16550"
    wr(u, LCR, 0)
    wr(u, FCR, 0x21)
    s1 = rd(u, IIR) >> 5
    wr(u, FCR, 0x01)
    wr(u, LCR, 0x80)
    wr(u, FCR, 0x21)
    s2 = rd(u, IIR) >> 5
    wr(u, FCR, 0x01)
    wr(u, LCR, 0)
    if s1 == 6 and s2 == 7:
        return "16750"
    ier = rd(u, IER)
    wr(u, IER, ier & ~0x40)
    if not rd(u, IER) & 0x40:
        wr(u, IER, ier | 0x40)
        if rd(u, IER) & 0x40:
            return "XScale"
    wr(u, IER, ier)
    # size_fifo(): loopback burst of 256 bytes
    wr(u, FCR, 0x07)
    wr(u, MCR, 0x10)
    wr(u, LCR, 0x80)
    wr(u, DLL, 1)
    wr(u, DLM, 0)
    wr(u, LCR, 0x03)
    for i in range(256):
        wr(u, THR, i)
    count = 0
    while rd(u, LSR) & 1 and count < 256:
        rd(u, RBR)
        count += 1
    wr(u, FCR, 0)
    wr(u, MCR, save_mcr)
    return "16550A" if count == 16 else f"fifo={count}"


def test_linux_autoconfig_identifies_16550a():
    u, _, out = make()
    assert linux_autoconfig(u) == "16550A"
    assert out == b""  # loopback bytes never reach the host
    assert not rd(u, LSR) & 1 and rd(u, MCR) == 0
    u.feed(b"ok")
    assert rd(u, RBR) == ord("o")


def test_linux_startup_thre_tests():
    """serial8250_do_startup(): the THRE re-assert test and the TXEN bug test."""
    u, irq, _ = make()
    wr(u, FCR, 0x01 | 0x06)
    rd(u, LSR), rd(u, RBR), rd(u, IIR), rd(u, MSR)
    # UART_BUG_THRE test
    wr(u, IER, 0x02)
    iir1 = rd(u, IIR)
    wr(u, IER, 0)
    wr(u, IER, 0x02)
    iir = rd(u, IIR)
    wr(u, IER, 0)
    assert not (not (iir1 & 1) and (iir & 1)), "THRE not re-asserted: Linux would flag UART_BUG_THRE"
    assert iir & 0x0F == IIR_THRE
    # UART_BUG_TXEN test
    wr(u, IER, 0x02)
    lsr = rd(u, LSR)
    iir = rd(u, IIR)
    wr(u, IER, 0)
    assert not (lsr & 0x40 and iir & 1)
    assert not irq.level


def test_linux_style_tx_interrupt_flow():
    """start_tx sets ETBEI; the handler writes a FIFO-load per THRE; stop_tx clears it."""
    u, irq, out = make()
    wr(u, FCR, 0x01)
    wr(u, IER, 0x05)  # RLSI | RDI as after startup
    msg = b"x" * 40
    pos = 0
    wr(u, IER, 0x07)  # start_tx
    rounds = 0
    while irq.level:
        rounds += 1
        iid = rd(u, IIR) & 0x0F
        assert iid == IIR_THRE
        if pos >= len(msg):
            wr(u, IER, 0x05)  # stop_tx
            continue
        for _ in range(16):
            if pos < len(msg):
                wr(u, THR, msg[pos])
                pos += 1
    assert out == msg and rounds == 4


def test_state_round_trip():
    u, irq, _ = make()
    wr(u, LCR, 0x83)
    wr(u, DLL, 3)
    wr(u, LCR, 0x03)
    wr(u, FCR, 0x81)
    wr(u, IER, 0x0B)
    wr(u, SCR, 0x42)
    wr(u, MCR, 0x0B)
    u.feed(b"0123456789" * 3)
    st = json.loads(json.dumps(u.state()))
    irq2 = IrqLine()
    v = Uart16550(irq2)
    v.load_state(st)
    assert v.state() == u.state()
    assert irq2.level == irq.level
    got = bytearray()
    while rd(v, LSR) & 1:
        got.append(rd(v, RBR))
    assert got == b"0123456789" * 3


def test_reset_keeps_host_input():
    u, irq, _ = make()
    wr(u, IER, 0x0F)
    u.feed(b"abc")
    u.reset()
    assert not irq.level and rd(u, IER) == 0
    assert rd(u, RBR) == ord("a")
