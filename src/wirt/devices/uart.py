"""NS16550A UART (compatible "ns16550a"), the virt board's console at 0x1000_0000.

Registers follow the TI/National PC16550D datasheet, "Register Description" (byte
registers, reg-shift 0):
    0 RBR (read) / THR (write)        DLL when LCR.DLAB = 1
    1 IER (bits 0-3)                  DLM when LCR.DLAB = 1
    2 IIR (read) / FCR (write)        (not affected by DLAB)
    3 LCR   4 MCR (bits 0-4)   5 LSR   6 MSR   7 SCR

Model choices (each chosen so Linux's 8250 driver sees a well-behaved 16550A):
- Transmission is instantaneous: THR/TX FIFO are always empty, so LSR.THRE and
  LSR.TEMT always read 1, and every THR write leaves a fresh THRE interrupt pending.
- THRE interrupt (datasheet "Interrupt Identification Register", priority 3): becomes
  pending when IER.ETBEI goes 0 -> 1 (THR is empty) and after each THR write; it is
  cleared by an IIR read that reports it, or by clearing IER.ETBEI.
- Receiver: 16-byte RX FIFO (1-byte holding register with FIFOs off) refilled from an
  unlimited host-side buffer as the guest drains it, so `feed()` never loses input.
  FCR RX reset discards only what is already in the FIFO; host bytes not yet moved
  in are still "on the wire" and arrive afterwards.
- Character timeout: with FIFOs on and fewer bytes than the trigger level, IIR reports
  timeout (0xC) at once, as if the four idle character times had already passed: host
  input arrives in bursts, so the line is idle whenever the FIFO is below trigger.
- Loopback (MCR bit 4): THR feeds the RX FIFO (overrun sets LSR.OE, the byte is lost),
  MSR reflects MCR (CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2) and host input waits.
  Outside loopback the modem inputs read as a ready terminal: CTS, DSR and DCD high.
- The interrupt line is high while IIR reports any interrupt. MCR.OUT2 does not gate
  it (that gate is PC board glue, not part of the 16550; QEMU's virt ignores it too).
"""

from __future__ import annotations

import base64
import threading
from collections import deque
from typing import Any, Callable

from wirt.devices.irq import IrqLine

__all__ = ["Uart16550"]

# Register offsets
RBR_THR_DLL = 0
IER_DLM = 1
IIR_FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

# IER bits
IER_ERBFI = 0x01  # received data available
IER_ETBEI = 0x02  # transmitter holding register empty
IER_ELSI = 0x04  # receiver line status
IER_EDSSI = 0x08  # modem status

# IIR interrupt ids (bits 3:0), highest priority first
IIR_NO_INT = 0x01
IIR_RLS = 0x06
IIR_RDA = 0x04
IIR_CTI = 0x0C
IIR_THRE = 0x02
IIR_MSI = 0x00
IIR_FIFO = 0xC0  # bits 7:6 set when FIFOs are enabled

# FCR bits
FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_KEEP = 0xC9  # FIFO enable, DMA mode, RX trigger bits are retained
_TRIGGER = (1, 4, 8, 14)

LCR_DLAB = 0x80

# MCR bits
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10

# LSR bits
LSR_DR = 0x01
LSR_OE = 0x02
LSR_THRE = 0x20
LSR_TEMT = 0x40

# MSR bits
MSR_DCTS = 0x01
MSR_DDSR = 0x02
MSR_TERI = 0x04
MSR_DDCD = 0x08
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
_MSR_IDLE = MSR_CTS | MSR_DSR | MSR_DCD  # inputs of a ready terminal

FIFO_SIZE = 16


class Uart16550:
    """A 16550A with instantaneous transmit and lossless host input.

    Host side: `feed(data)` (any thread) queues input; `on_output(byte)` receives each
    transmitted byte. Guest side: the MMIO protocol (`read`, `write`).
    """

    def __init__(
        self,
        irq: IrqLine | None = None,
        on_output: Callable[[int], None] | None = None,
        size: int = 0x100,
    ) -> None:
        self.size = size
        self.irq = irq if irq is not None else IrqLine()
        self.on_output = on_output
        self._lock = threading.RLock()
        self._host: deque[int] = deque()
        self._rx: deque[int] = deque()
        self._mcr = 0
        self.reset()

    # ---- host side --------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue host input for the guest; thread-safe, never drops bytes."""
        if not data:
            return
        with self._lock:
            self._host.extend(data)
            self._refill()
            self._update_irq()

    def pending_input(self) -> int:
        """Bytes not yet read by the guest (host buffer plus RX FIFO)."""
        with self._lock:
            return len(self._host) + len(self._rx)

    # ---- internal state -----------------------------------------------------------

    def reset(self) -> None:
        """Master reset (datasheet "Reset" table). Unread input is kept for the next boot."""
        with self._lock:
            if not self._mcr & MCR_LOOP:  # loopback bytes are not host input
                self._host.extendleft(reversed(self._rx))
            self._ier = 0
            self._lcr = 0
            self._mcr = 0
            self._fcr = 0
            self._scr = 0
            self._dll = 0
            self._dlm = 0
            self._oe = False
            self._thre_pending = False
            self._msr_delta = 0
            self._rx.clear()
            self._refill()
            self._update_irq()

    def _rx_capacity(self) -> int:
        return FIFO_SIZE if self._fcr & FCR_ENABLE else 1

    def _refill(self) -> None:
        if self._mcr & MCR_LOOP:
            return  # the receiver listens to the transmitter in loopback
        host, rx = self._host, self._rx
        cap = FIFO_SIZE if self._fcr & FCR_ENABLE else 1
        while host and len(rx) < cap:
            rx.append(host.popleft())

    def _modem_inputs(self) -> int:
        mcr = self._mcr
        if not mcr & MCR_LOOP:
            return _MSR_IDLE
        v = 0
        if mcr & MCR_RTS:
            v |= MSR_CTS
        if mcr & MCR_DTR:
            v |= MSR_DSR
        if mcr & MCR_OUT1:
            v |= MSR_RI
        if mcr & MCR_OUT2:
            v |= MSR_DCD
        return v

    def _iir_id(self) -> int:
        # Priority order from the datasheet's IIR table.
        ier = self._ier
        if ier & IER_ELSI and self._oe:
            return IIR_RLS
        if ier & IER_ERBFI and self._rx:
            if self._fcr & FCR_ENABLE and len(self._rx) < _TRIGGER[self._fcr >> 6]:
                return IIR_CTI
            return IIR_RDA
        if ier & IER_ETBEI and self._thre_pending:
            return IIR_THRE
        if ier & IER_EDSSI and self._msr_delta:
            return IIR_MSI
        return IIR_NO_INT

    def _update_irq(self) -> None:
        self.irq.set(self._iir_id() != IIR_NO_INT)

    def _transmit(self, byte: int) -> None:
        if self._mcr & MCR_LOOP:
            rx = self._rx
            if len(rx) < self._rx_capacity():
                rx.append(byte)
            elif self._fcr & FCR_ENABLE:
                self._oe = True  # FIFO full: the shift register is overwritten
            else:
                rx[-1] = byte  # 16450 mode: the holding register is overwritten
                self._oe = True
        elif self.on_output is not None:
            self.on_output(byte)
        self._thre_pending = True  # THR is empty again at once

    # ---- MMIO -----------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset == RBR_THR_DLL:
                if self._lcr & LCR_DLAB:
                    return self._dll
                rx = self._rx
                if not rx:
                    return 0
                b = rx.popleft()
                self._refill()
                self._update_irq()
                return b
            if offset == IER_DLM:
                return self._dlm if self._lcr & LCR_DLAB else self._ier
            if offset == IIR_FCR:
                iid = self._iir_id()
                if iid == IIR_THRE:
                    self._thre_pending = False
                    self._update_irq()
                return iid | (IIR_FIFO if self._fcr & FCR_ENABLE else 0)
            if offset == LSR:
                v = LSR_THRE | LSR_TEMT
                if self._rx:
                    v |= LSR_DR
                if self._oe:
                    v |= LSR_OE
                    self._oe = False
                    self._update_irq()
                return v
            if offset == LCR:
                return self._lcr
            if offset == MCR:
                return self._mcr
            if offset == MSR:
                v = self._modem_inputs() | self._msr_delta
                if self._msr_delta:
                    self._msr_delta = 0
                    self._update_irq()
                return v
            if offset == SCR:
                return self._scr
            return 0

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        with self._lock:
            if offset == RBR_THR_DLL:
                if self._lcr & LCR_DLAB:
                    self._dll = value
                else:
                    self._transmit(value)
                    self._update_irq()
            elif offset == IER_DLM:
                if self._lcr & LCR_DLAB:
                    self._dlm = value
                    return
                old = self._ier
                self._ier = value & 0x0F
                if self._ier & IER_ETBEI:
                    if not old & IER_ETBEI:
                        self._thre_pending = True  # rising edge while THR is empty
                else:
                    self._thre_pending = False
                self._update_irq()
            elif offset == IIR_FCR:
                self._write_fcr(value)
            elif offset == LCR:
                self._lcr = value
            elif offset == MCR:
                before = self._modem_inputs()
                was_loop = self._mcr & MCR_LOOP
                self._mcr = value & 0x1F
                after = self._modem_inputs()
                changed = before ^ after
                delta = 0
                if changed & MSR_CTS:
                    delta |= MSR_DCTS
                if changed & MSR_DSR:
                    delta |= MSR_DDSR
                if before & MSR_RI and not after & MSR_RI:
                    delta |= MSR_TERI
                if changed & MSR_DCD:
                    delta |= MSR_DDCD
                self._msr_delta |= delta
                if was_loop and not self._mcr & MCR_LOOP:
                    self._refill()
                self._update_irq()
            elif offset == SCR:
                self._scr = value
            # LSR and MSR are read-only (writes are factory test modes): ignored

    def _write_fcr(self, value: int) -> None:
        # Datasheet FCR: bit 0 enables FIFOs; changing it clears both FIFOs; the other
        # bits are only programmed while bit 0 is set; bits 1/2 self-clear.
        enabling = value & FCR_ENABLE
        if enabling != self._fcr & FCR_ENABLE:
            self._rx.clear()
        if enabling:
            if value & FCR_CLEAR_RX:
                self._rx.clear()
            self._fcr = value & FCR_KEEP
        else:
            self._fcr = 0
        self._refill()
        self._update_irq()

    # ---- snapshots --------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ier": self._ier,
                "lcr": self._lcr,
                "mcr": self._mcr,
                "fcr": self._fcr,
                "scr": self._scr,
                "dll": self._dll,
                "dlm": self._dlm,
                "oe": self._oe,
                "thre_pending": self._thre_pending,
                "msr_delta": self._msr_delta,
                "rx": base64.b64encode(bytes(self._rx)).decode("ascii"),
                "host": base64.b64encode(bytes(self._host)).decode("ascii"),
            }

    def load_state(self, d: dict[str, Any]) -> None:
        with self._lock:
            self._ier = int(d["ier"]) & 0x0F
            self._lcr = int(d["lcr"]) & 0xFF
            self._mcr = int(d["mcr"]) & 0x1F
            self._fcr = int(d["fcr"]) & FCR_KEEP
            self._scr = int(d["scr"]) & 0xFF
            self._dll = int(d["dll"]) & 0xFF
            self._dlm = int(d["dlm"]) & 0xFF
            self._oe = bool(d["oe"])
            self._thre_pending = bool(d["thre_pending"])
            self._msr_delta = int(d["msr_delta"]) & 0x0F
            self._rx = deque(base64.b64decode(d["rx"])[: self._rx_capacity()])
            self._host = deque(base64.b64decode(d["host"]))
            self._update_irq()
