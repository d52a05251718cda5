#include "devices/serial_16550.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include <fmt/format.h>

#include "vmm/base/state_codec.h"

namespace petrel {

namespace {

// Register offsets (PC16550D datasheet, Table II). DLL/DLM replace RBR/THR and IER while
// LCR.DLAB is set.
constexpr uint64_t kRbrThr = 0;
constexpr uint64_t kIer = 1;
constexpr uint64_t kIirFcr = 2;
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

// IER: ERBFI, ETBEI, ELSI, EDSSI; bits 4-7 always read 0.
constexpr uint8_t kIerErbfi = 0x01;
constexpr uint8_t kIerEtbei = 0x02;
constexpr uint8_t kIerElsi = 0x04;
constexpr uint8_t kIerEdssi = 0x08;
constexpr uint8_t kIerMask = 0x0f;

// IIR: bit 0 is "no interrupt pending", bits 1-3 the source, bits 6-7 "FIFOs enabled".
constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirLineStatus = 0x06;
constexpr uint8_t kIirRxData = 0x04;
constexpr uint8_t kIirThrEmpty = 0x02;
constexpr uint8_t kIirModemStatus = 0x00;
constexpr uint8_t kIirFifoEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;

constexpr uint8_t kLcrDlab = 0x80;

// MCR: DTR, RTS, OUT1, OUT2, LOOP; bits 5-7 always read 0.
constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

constexpr uint8_t kLsrDr = 0x01;
constexpr uint8_t kLsrOe = 0x02;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;

// MSR: deltas DCTS, DDSR, TERI, DDCD in bits 0-3; CTS, DSR, RI, DCD in bits 4-7.
constexpr uint8_t kMsrDcts = 0x01;
constexpr uint8_t kMsrDdsr = 0x02;
constexpr uint8_t kMsrTeri = 0x04;
constexpr uint8_t kMsrDdcd = 0x08;
constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;

// State format 1: header, u8 IER, LCR, MCR, SCR, DLL, DLM, LSR error bits, MSR delta bits,
// FIFO-enabled (0/1), THR-empty source latched (0/1), then the receive FIFO oldest byte
// first as a byte string.
constexpr uint32_t kStateMagic = 0x54524155;  // "UART"
constexpr uint32_t kStateVersion = 1;
constexpr uint8_t kMsrDeltaMask = 0x0f;

// Reads a u8 that may only have bits of `allowed` set; `field` names it in the error.
Result<uint8_t> read_masked(StateReader& r, std::string_view field, uint8_t allowed) {
  PETREL_TRY_ASSIGN(uint8_t v, r.u8());
  if ((v & ~allowed) != 0) {
    return r.fail(
        fmt::format("serial 16550 {} {:#04x} has bits outside {:#04x}", field, v, allowed));
  }
  return v;
}

Result<bool> read_bool(StateReader& r, std::string_view field) {
  PETREL_TRY_ASSIGN(uint8_t v, r.u8());
  if (v > 1) {
    return r.fail(fmt::format("serial 16550 {} is {}, expected 0 or 1", field, v));
  }
  return v == 1;
}

// Best effort: a failing fd (EAGAIN, EPIPE, ...) loses the rest of `bytes`.
void write_all(int fd, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
}

}  // namespace

Serial16550::Serial16550(std::shared_ptr<InterruptLine> irq, UniqueFd output)
    : irq_(std::move(irq)), output_(std::move(output)) {}

void Serial16550::read(uint64_t offset, std::span<std::byte> data) {
  std::fill(data.begin(), data.end(), std::byte{0});
  if (data.empty() || offset >= kPortCount) {
    return;
  }
  bool irq_changed = false;
  {
    std::lock_guard lock(mutex_);
    data[0] = std::byte{read_register_locked(offset)};
    irq_changed = update_irq_locked();
  }
  if (irq_changed) {
    signal_irq();
  }
}

void Serial16550::write(uint64_t offset, std::span<const std::byte> data) {
  if (data.empty() || offset >= kPortCount) {
    return;
  }
  std::optional<uint8_t> tx;
  bool irq_changed = false;
  {
    std::lock_guard lock(mutex_);
    tx = write_register_locked(offset, std::to_integer<uint8_t>(data[0]));
    irq_changed = update_irq_locked();
  }
  // The byte leaves before the THR-empty interrupt is raised, so a handler on another vCPU
  // cannot get its next byte out first.
  if (tx) {
    transmit(*tx);
  }
  if (irq_changed) {
    signal_irq();
  }
}

size_t Serial16550::push_input(std::span<const std::byte> bytes) {
  size_t accepted = 0;
  bool irq_changed = false;
  {
    std::lock_guard lock(mutex_);
    while (accepted < bytes.size() && rx_push_locked(bytes[accepted])) {
      ++accepted;
    }
    rx_bytes_ += accepted;
    irq_changed = update_irq_locked();
  }
  if (irq_changed) {
    signal_irq();
  }
  return accepted;
}

size_t Serial16550::input_space() const {
  std::lock_guard lock(mutex_);
  return kInputCapacity - rx_count_;
}

uint64_t Serial16550::tx_bytes() const {
  std::lock_guard lock(mutex_);
  return tx_bytes_;
}

uint64_t Serial16550::rx_bytes() const {
  std::lock_guard lock(mutex_);
  return rx_bytes_;
}

std::vector<std::byte> Serial16550::save_state() const {
  StateWriter w;
  std::vector<std::byte> fifo;
  {
    std::lock_guard lock(mutex_);
    w.header(kStateMagic, kStateVersion);
    for (uint8_t v : {ier_, lcr_, mcr_, scr_, dll_, dlm_, lsr_errors_, msr_deltas_}) {
      w.u8(v);
    }
    w.u8(fifo_enabled_ ? 1 : 0);
    w.u8(thr_interrupt_ ? 1 : 0);
    fifo.reserve(rx_count_);
    for (size_t i = 0; i < rx_count_; ++i) {
      fifo.push_back(rx_buf_[(rx_head_ + i) % kInputCapacity]);
    }
  }
  w.bytes(fifo);
  return std::move(w).take();
}

Result<void> Serial16550::restore_state(std::span<const std::byte> bytes) {
  StateReader r(bytes, "serial 16550 state");
  PETREL_TRY(r.expect_header(kStateMagic, kStateVersion));
  PETREL_TRY_ASSIGN(uint8_t ier, read_masked(r, "IER", kIerMask));
  PETREL_TRY_ASSIGN(uint8_t lcr, r.u8());
  PETREL_TRY_ASSIGN(uint8_t mcr, read_masked(r, "MCR", kMcrMask));
  PETREL_TRY_ASSIGN(uint8_t scr, r.u8());
  PETREL_TRY_ASSIGN(uint8_t dll, r.u8());
  PETREL_TRY_ASSIGN(uint8_t dlm, r.u8());
  PETREL_TRY_ASSIGN(uint8_t lsr_errors, read_masked(r, "LSR error bits", kLsrOe));
  PETREL_TRY_ASSIGN(uint8_t msr_deltas, read_masked(r, "MSR delta bits", kMsrDeltaMask));
  PETREL_TRY_ASSIGN(bool fifo_enabled, read_bool(r, "FIFO enable"));
  PETREL_TRY_ASSIGN(bool thr_interrupt, read_bool(r, "THR-empty source"));
  PETREL_TRY_ASSIGN(
      auto fifo,
      r.bytes(kInputCapacity)
          .context(fmt::format("serial 16550 receive FIFO (capacity {} bytes)", kInputCapacity)));
  PETREL_TRY(r.expect_end());

  bool irq_changed = false;
  {
    std::lock_guard lock(mutex_);
    ier_ = ier;
    lcr_ = lcr;
    mcr_ = mcr;
    scr_ = scr;
    dll_ = dll;
    dlm_ = dlm;
    lsr_errors_ = lsr_errors;
    msr_deltas_ = msr_deltas;
    fifo_enabled_ = fifo_enabled;
    thr_interrupt_ = thr_interrupt;
    std::copy(fifo.begin(), fifo.end(), rx_buf_.begin());
    rx_head_ = 0;
    rx_count_ = fifo.size();
    irq_changed = update_irq_locked();
  }
  if (irq_changed) {
    signal_irq();
  }
  return {};
}

uint8_t Serial16550::read_register_locked(uint64_t offset) {
  bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kRbrThr:
      return dlab ? dll_ : rx_pop_locked();
    case kIer:
      return dlab ? dlm_ : ier_;
    case kIirFcr: {
      uint8_t id = interrupt_id_locked();
      // Reading IIR clears the THR-empty source only when it is the one reported.
      if (id == kIirThrEmpty) {
        thr_interrupt_ = false;
      }
      return static_cast<uint8_t>(id | (fifo_enabled_ ? kIirFifoEnabled : 0));
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr: {
      uint8_t lsr = static_cast<uint8_t>(kLsrThre | kLsrTemt | lsr_errors_);
      if (rx_count_ > 0) {
        lsr |= kLsrDr;
      }
      lsr_errors_ = 0;
      return lsr;
    }
    case kMsr: {
      uint8_t msr = static_cast<uint8_t>(modem_status_locked() | msr_deltas_);
      msr_deltas_ = 0;
      return msr;
    }
    case kScr:
      return scr_;
    default:
      return 0;
  }
}

std::optional<uint8_t> Serial16550::write_register_locked(uint64_t offset, uint8_t value) {
  bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kRbrThr:
      if (dlab) {
        dll_ = value;
        return std::nullopt;
      }
      // The byte leaves at once, so THR is empty again: the THR-empty source is latched
      // (writing THR clears it, finishing the transmission sets it).
      thr_interrupt_ = true;
      if ((mcr_ & kMcrLoop) != 0) {
        if (!rx_push_locked(std::byte{value})) {
          lsr_errors_ |= kLsrOe;
        }
        return std::nullopt;
      }
      ++tx_bytes_;
      return value;
    case kIer:
      if (dlab) {
        dlm_ = value;
      } else {
        write_ier_locked(value);
      }
      return std::nullopt;
    case kIirFcr:
      write_fcr_locked(value);
      return std::nullopt;
    case kLcr:
      lcr_ = value;
      return std::nullopt;
    case kMcr:
      write_mcr_locked(value);
      return std::nullopt;
    case kScr:
      scr_ = value;
      return std::nullopt;
    default:
      // LSR and MSR writes are factory-test only on the real part.
      return std::nullopt;
  }
}

void Serial16550::write_ier_locked(uint8_t value) {
  uint8_t old = ier_;
  ier_ = value & kIerMask;
  // THR is always empty, so enabling ETBEI raises the interrupt right away; Linux's
  // serial8250_do_startup relies on this to probe for the THRE interrupt.
  if ((ier_ & kIerEtbei) != 0 && (old & kIerEtbei) == 0) {
    thr_interrupt_ = true;
  } else if ((ier_ & kIerEtbei) == 0) {
    thr_interrupt_ = false;
  }
}

void Serial16550::write_fcr_locked(uint8_t value) {
  bool enable = (value & kFcrEnable) != 0;
  // FCR0: switching between FIFO and 16450 mode clears the FIFOs, and the other FCR bits
  // are only programmed while FCR0 is 1. The transmitter FIFO is always empty.
  if (enable != fifo_enabled_ || (enable && (value & kFcrClearRx) != 0)) {
    rx_head_ = 0;
    rx_count_ = 0;
  }
  fifo_enabled_ = enable;
}

void Serial16550::write_mcr_locked(uint8_t value) {
  uint8_t before = modem_status_locked();
  mcr_ = value & kMcrMask;
  uint8_t after = modem_status_locked();
  uint8_t changed = before ^ after;
  if ((changed & kMsrCts) != 0) {
    msr_deltas_ |= kMsrDcts;
  }
  if ((changed & kMsrDsr) != 0) {
    msr_deltas_ |= kMsrDdsr;
  }
  if ((changed & kMsrDcd) != 0) {
    msr_deltas_ |= kMsrDdcd;
  }
  if ((before & kMsrRi) != 0 && (after & kMsrRi) == 0) {
    msr_deltas_ |= kMsrTeri;
  }
}

uint8_t Serial16550::modem_status_locked() const {
  if ((mcr_ & kMcrLoop) == 0) {
    return kMsrDcd | kMsrDsr | kMsrCts;
  }
  // Loopback: the modem control outputs drive the modem status inputs.
  uint8_t msr = 0;
  msr |= (mcr_ & kMcrRts) != 0 ? kMsrCts : 0;
  msr |= (mcr_ & kMcrDtr) != 0 ? kMsrDsr : 0;
  msr |= (mcr_ & kMcrOut1) != 0 ? kMsrRi : 0;
  msr |= (mcr_ & kMcrOut2) != 0 ? kMsrDcd : 0;
  return msr;
}

// Priority order of the datasheet's Table IV: receiver line status, received data
// available, THR empty, modem status.
uint8_t Serial16550::interrupt_id_locked() const {
  if ((ier_ & kIerElsi) != 0 && lsr_errors_ != 0) {
    return kIirLineStatus;
  }
  if ((ier_ & kIerErbfi) != 0 && rx_count_ > 0) {
    return kIirRxData;
  }
  if ((ier_ & kIerEtbei) != 0 && thr_interrupt_) {
    return kIirThrEmpty;
  }
  if ((ier_ & kIerEdssi) != 0 && msr_deltas_ != 0) {
    return kIirModemStatus;
  }
  return kIirNone;
}

bool Serial16550::rx_push_locked(std::byte byte) {
  if (rx_count_ == kInputCapacity) {
    return false;
  }
  rx_buf_[(rx_head_ + rx_count_) % kInputCapacity] = byte;
  ++rx_count_;
  return true;
}

uint8_t Serial16550::rx_pop_locked() {
  if (rx_count_ == 0) {
    return 0;
  }
  auto byte = std::to_integer<uint8_t>(rx_buf_[rx_head_]);
  rx_head_ = (rx_head_ + 1) % kInputCapacity;
  --rx_count_;
  return byte;
}

bool Serial16550::update_irq_locked() {
  bool want = interrupt_id_locked() != kIirNone;
  if (irq_ == nullptr || want == irq_wanted_.load()) {
    return false;
  }
  irq_wanted_.store(want);
  return true;
}

// Flat combining: one thread at a time (the holder of irq_signalling_) drives the line
// and loops until no caller has marked it dirty, so the last wanted level always reaches
// the line, set_level is only called on a change, and no lock is held during set_level.
// A caller that finds another thread signalling leaves its update to that thread.
void Serial16550::signal_irq() {
  irq_dirty_.store(true);
  while (irq_dirty_.load()) {
    bool expected = false;
    if (!irq_signalling_.compare_exchange_strong(expected, true)) {
      return;
    }
    while (irq_dirty_.exchange(false)) {
      bool want = irq_wanted_.load();
      if (want != line_level_) {
        line_level_ = want;
        irq_->set_level(want);
      }
    }
    irq_signalling_.store(false);
  }
}

void Serial16550::transmit(uint8_t byte) const {
  if (!output_.valid()) {
    return;
  }
  std::byte b{byte};
  write_all(output_.get(), std::span(&b, 1));
}

}  // namespace petrel
