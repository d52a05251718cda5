// Serial16550: a 16550A UART on a port I/O bus (8 ports, e.g. PETREL_PORT_COM1), modelled
// on the TI PC16550D datasheet register set and complete enough for Linux's 8250 driver.
//
// Transmit is immediate: every THR byte is written to the output fd at once, so LSR.THRE
// and LSR.TEMT always read 1 and the transmitter FIFO is always empty. Receive goes
// through one bounded FIFO of kInputCapacity bytes that the host fills with push_input()
// and the guest drains through RBR. It stands in for the chip's 16-byte receiver FIFO in
// both FIFO and 16450 mode; there are no trigger levels: "received data available" is
// pending while it is non-empty.
//
// Thread affinity: read/write run on vCPU threads, push_input/input_space on a host input
// thread, the counters on any thread; all of them may run at once. Register state is
// guarded by one mutex. Neither InterruptLine::set_level nor write(2) is called with that
// mutex held, so a blocking output fd or a set_level that calls back into this device
// cannot deadlock. A THR write blocks its vCPU until write(2) is done; when the output fd
// is a pipe, the process must ignore SIGPIPE.
//
// Every register value written by the guest is guest-controlled; any value is accepted.
//
// State (save_state/restore_state): the registers, the receive FIFO contents and the latched
// interrupt sources; the IRQ level is derived from them. The tx/rx counters are this
// process's metrics and are not carried.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "devices/bus_device.h"
#include "devices/interrupt_line.h"
#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

class Serial16550 : public BusDevice {
 public:
  static constexpr uint64_t kPortCount = 8;
  static constexpr size_t kInputCapacity = 4096;  // bytes

  // `irq` may be null (no interrupt wired). `output` may be invalid: output is discarded.
  // The line is assumed deasserted at construction.
  Serial16550(std::shared_ptr<InterruptLine> irq, UniqueFd output);

  // Only the first byte of an access is used (Linux only makes byte accesses); the other
  // bytes of a read are 0. Offsets past the 8 registers read 0 and ignore writes.
  void read(uint64_t offset, std::span<std::byte> data) override;
  void write(uint64_t offset, std::span<const std::byte> data) override;

  // Appends host input to the receive FIFO. Returns how many leading bytes of `bytes`
  // were accepted; the caller offers the rest again once input_space() is non-zero.
  size_t push_input(std::span<const std::byte> bytes);
  // Free bytes in the receive FIFO.
  size_t input_space() const;

  // Bytes the guest wrote to THR outside loopback mode (discarded ones included).
  uint64_t tx_bytes() const;
  // Bytes push_input accepted.
  uint64_t rx_bytes() const;

  // Snapshot / migration state (format: a StateWriter header, then the registers and the
  // receive FIFO; see the .cc). Called by the VM owner while every vCPU is parked and the
  // event loop and host input are quiesced (nothing else touches the device meanwhile).
  std::vector<std::byte> save_state() const;
  // Called on a device freshly built with the same construction parameters, before any
  // vCPU runs. `bytes` is untrusted (a snapshot file, a migration stream): a wrong magic or
  // version, a truncated or oversized blob, or a value the guest could never have produced
  // (reserved register bits, a FIFO longer than kInputCapacity) is ErrorCode::
  // kInvalidArgument naming the field, and the device is left unchanged. On success the IRQ
  // line is driven to the restored level (set_level(true) when an enabled source is
  // pending), so restore after the in-kernel irqchip state, whose input it drives.
  Result<void> restore_state(std::span<const std::byte> bytes);

 private:
  // The *_locked helpers require mutex_.
  uint8_t read_register_locked(uint64_t offset);
  // Returns the byte to transmit, if the write was a THR write outside loopback mode.
  std::optional<uint8_t> write_register_locked(uint64_t offset, uint8_t value);
  void write_ier_locked(uint8_t value);
  void write_fcr_locked(uint8_t value);
  void write_mcr_locked(uint8_t value);
  uint8_t modem_status_locked() const;
  uint8_t interrupt_id_locked() const;
  bool rx_push_locked(std::byte byte);
  uint8_t rx_pop_locked();
  // Recomputes the wanted IRQ level; true when it changed and signal_irq() must run.
  bool update_irq_locked();

  // Drives the line to irq_wanted_. Called without mutex_; see the .cc for how concurrent
  // callers are combined so that the last wanted level always reaches the line.
  void signal_irq();
  void transmit(uint8_t byte) const;

  const std::shared_ptr<InterruptLine> irq_;
  const UniqueFd output_;

  mutable std::mutex mutex_;
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0;
  uint8_t mcr_ = 0;
  uint8_t scr_ = 0;
  uint8_t dll_ = 0x0c;  // divisor 12: 9600 baud from the PC's 1.8432 MHz clock
  uint8_t dlm_ = 0;
  uint8_t lsr_errors_ = 0;  // LSR.OE; cleared by reading LSR
  uint8_t msr_deltas_ = 0;  // MSR bits 0-3; cleared by reading MSR
  bool fifo_enabled_ = false;
  bool thr_interrupt_ = false;  // THR-empty interrupt source latched
  std::array<std::byte, kInputCapacity> rx_buf_{};
  size_t rx_head_ = 0;
  size_t rx_count_ = 0;
  uint64_t tx_bytes_ = 0;
  uint64_t rx_bytes_ = 0;

  std::atomic<bool> irq_wanted_{false};  // written under mutex_
  std::atomic<bool> irq_dirty_{false};
  std::atomic<bool> irq_signalling_{false};
  bool line_level_ = false;  // owned by whichever thread holds irq_signalling_
};

}  // namespace petrel
