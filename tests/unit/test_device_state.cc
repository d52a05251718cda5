// Device state save/restore (Serial16550, I8042, PciConfigSpace, PciRoot, Msix): a device
// driven into a non-trivial state through its register interface is saved, restored into a
// freshly built twin, and both must then behave the same through that interface. Every
// restore input is untrusted: framing damage (magic, version, each truncation, a trailing
// byte) and values the guest could never have produced are refused with kInvalidArgument,
// and a refused restore leaves the device as it was (its save_state is unchanged).
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "devices/i8042.h"
#include "devices/msix.h"
#include "devices/pci_config_space.h"
#include "devices/pci_root.h"
#include "devices/serial_16550.h"
#include "vmm/base/kvm_system.h"
#include "vmm/base/kvm_vcpu.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/base/state_codec.h"
#include "vmm/gsi_router.h"
#include "vmm/kvm_msi_controller.h"

using petrel::BusDevice;
using petrel::ErrorCode;
using petrel::GsiRouter;
using petrel::GuestAddress;
using petrel::I8042;
using petrel::MsiController;
using petrel::MsiMessage;
using petrel::MsiVector;
using petrel::Msix;
using petrel::PciBar;
using petrel::PciConfigSpace;
using petrel::PciDevice;
using petrel::PciIds;
using petrel::PciRoot;
using petrel::Result;
using petrel::Serial16550;
using petrel::UniqueFd;

namespace {

using Bytes = std::vector<std::byte>;
using Restore = std::function<Result<void>(std::span<const std::byte>)>;
using Snapshot = std::function<Bytes()>;

// A well-formed blob spoiled in `bad` must be refused with kInvalidArgument (and a message
// containing `needle`, when given) and must leave the target's state as it was.
void check_refused(const Bytes& bad, const Restore& restore, const Snapshot& snapshot,
                   const std::string& needle = "") {
  const Bytes before = snapshot();
  auto r = restore(bad);
  REQUIRE_FALSE(r.ok());
  INFO(r.error().to_string());
  CHECK(r.error().code() == ErrorCode::kInvalidArgument);
  if (!needle.empty()) {
    CHECK_THAT(r.error().to_string(), Catch::Contains(needle));
  }
  CHECK(snapshot() == before);
}

// Another magic, another version, every truncation and a trailing byte.
void check_framing_refused(const Bytes& good, const Restore& restore, const Snapshot& snapshot) {
  Bytes bad = good;
  bad[0] ^= std::byte{0xff};
  check_refused(bad, restore, snapshot, "bad magic");
  bad = good;
  bad[4] = std::byte{2};
  check_refused(bad, restore, snapshot, "unsupported format version 2");
  for (size_t n = 0; n < good.size(); ++n) {
    INFO("truncated to " << n << " of " << good.size() << " bytes");
    check_refused(Bytes(good.begin(), good.begin() + static_cast<ptrdiff_t>(n)), restore, snapshot);
  }
  bad = good;
  bad.push_back(std::byte{0});
  check_refused(bad, restore, snapshot, "1 trailing bytes");
}

Bytes with_byte(Bytes blob, size_t at, uint8_t value) {
  blob.at(at) = std::byte{value};
  return blob;
}

// blob[0, from) + a byte string of `len` bytes of `fill` + blob[to, end).
Bytes with_string(const Bytes& blob, size_t from, size_t to, size_t len, uint8_t fill) {
  Bytes out(blob.begin(), blob.begin() + static_cast<ptrdiff_t>(from));
  petrel::put_le(out, len, 4);
  out.insert(out.end(), len, std::byte{fill});
  out.insert(out.end(), blob.begin() + static_cast<ptrdiff_t>(to), blob.end());
  return out;
}

class FakeLine : public petrel::InterruptLine {
 public:
  void set_level(bool asserted) override { levels.push_back(asserted); }
  std::vector<bool> take() { return std::exchange(levels, {}); }
  std::vector<bool> levels;
};

uint8_t in8(BusDevice& dev, uint64_t offset) {
  std::array<std::byte, 1> b{std::byte{0x5a}};
  dev.read(offset, b);
  return std::to_integer<uint8_t>(b[0]);
}

void out8(BusDevice& dev, uint64_t offset, uint8_t value) {
  std::array<std::byte, 1> b{std::byte{value}};
  dev.write(offset, b);
}

// ---- Serial16550 -------------------------------------------------------------------------

constexpr uint64_t kRbr = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;

struct Uart {
  std::shared_ptr<FakeLine> line = std::make_shared<FakeLine>();
  Serial16550 serial{line, UniqueFd()};

  // Reads every register (DLAB off and on) and drains the FIFO: what the guest can see.
  std::vector<uint8_t> probe() {
    std::vector<uint8_t> seen;
    for (uint64_t reg : {kIer, kIir, kLcr, kMcr, kLsr, kMsr, kScr}) {
      seen.push_back(in8(serial, reg));
    }
    const uint8_t lcr = in8(serial, kLcr);
    out8(serial, kLcr, lcr | 0x80);
    seen.push_back(in8(serial, 0));  // DLL
    seen.push_back(in8(serial, 1));  // DLM
    out8(serial, kLcr, lcr);
    while ((in8(serial, kLsr) & 0x01) != 0) {
      seen.push_back(in8(serial, kRbr));
    }
    seen.push_back(in8(serial, kIir));
    return seen;
  }
};

// Divisor 0x0201, 7E1 line settings, FIFOs on, modem lines, scratch, "hello" received with
// the receive interrupt enabled (so the line is up), the MSR deltas of a loopback toggle.
void drive(Uart& u) {
  out8(u.serial, kLcr, 0x80);
  out8(u.serial, 0, 0x01);
  out8(u.serial, 1, 0x02);
  out8(u.serial, kLcr, 0x1a);
  out8(u.serial, kIir, 0x01);  // FCR: FIFO enable
  out8(u.serial, kMcr, 0x13);  // loopback with DTR, RTS
  out8(u.serial, kMcr, 0x0b);  // back to DTR, RTS, OUT2: MSR deltas latched
  out8(u.serial, kScr, 0xa5);
  out8(u.serial, kIer, 0x01);  // ERBFI
  const std::string text = "hello";
  REQUIRE(u.serial.push_input(std::as_bytes(std::span(text))) == 5);
}

Restore restore_of(Serial16550& s) {
  return [&s](std::span<const std::byte> b) { return s.restore_state(b); };
}
Snapshot snapshot_of(const Serial16550& s) {
  return [&s] { return s.save_state(); };
}

TEST_CASE("device state: serial 16550 round trip", "[device-state][serial]") {
  Uart a;
  drive(a);
  REQUIRE(a.line->levels == std::vector<bool>{true});
  const Bytes state = a.serial.save_state();

  Uart b;
  REQUIRE(b.serial.restore_state(state));
  CHECK(b.line->take() == std::vector<bool>{true});  // the pending receive interrupt
  CHECK(b.serial.input_space() == Serial16550::kInputCapacity - 5);
  CHECK(b.serial.save_state() == state);
  a.line->take();

  const auto seen_a = a.probe();
  const auto seen_b = b.probe();
  CHECK(seen_b == seen_a);
  // IIR said "received data" (0x04 | FIFOs 0xc0) before draining, "none" after.
  CHECK(seen_b[1] == 0xc4);
  CHECK(seen_b.back() == 0xc1);
  CHECK(seen_b[7] == 0x01);
  CHECK(seen_b[8] == 0x02);
  CHECK(std::string(seen_b.begin() + 9, seen_b.begin() + 14) == "hello");
  CHECK(a.line->take() == std::vector<bool>{false});  // the FIFO drained
  CHECK(b.line->take() == std::vector<bool>{false});
}

TEST_CASE("device state: serial 16550 refusals", "[device-state][serial]") {
  Uart a;
  drive(a);
  const Bytes good = a.serial.save_state();
  // 8 header, IER 8, LCR 9, MCR 10, SCR 11, DLL 12, DLM 13, LSR 14, MSR 15, FIFO enable 16,
  // THR source 17, FIFO length at 18.
  REQUIRE(good.size() == 18 + 4 + 5);

  Uart b;
  out8(b.serial, kScr, 0x77);  // some state of its own that must survive refusals
  const auto restore = restore_of(b.serial);
  const auto snapshot = snapshot_of(b.serial);
  check_framing_refused(good, restore, snapshot);
  check_refused(with_byte(good, 8, 0x10), restore, snapshot, "IER 0x10");
  check_refused(with_byte(good, 10, 0x20), restore, snapshot, "MCR 0x20");
  check_refused(with_byte(good, 14, 0x01), restore, snapshot, "LSR error bits");
  check_refused(with_byte(good, 15, 0x10), restore, snapshot, "MSR delta bits");
  check_refused(with_byte(good, 16, 2), restore, snapshot, "FIFO enable is 2");
  check_refused(with_byte(good, 17, 0xff), restore, snapshot, "THR-empty source");
  const size_t cap = Serial16550::kInputCapacity;
  check_refused(with_string(good, 18, good.size(), cap + 1, 'x'), restore, snapshot,
                "receive FIFO");
  CHECK(b.line->levels.empty());

  // A full FIFO is a state the guest can reach.
  REQUIRE(b.serial.restore_state(with_string(good, 18, good.size(), cap, 'x')));
  CHECK(b.serial.input_space() == 0);
  CHECK(in8(b.serial, kRbr) == 'x');
}

// ---- I8042 -------------------------------------------------------------------------------

constexpr uint64_t kData = 0;
constexpr uint64_t kCommand = 4;

struct Kbc {
  std::shared_ptr<FakeLine> line = std::make_shared<FakeLine>();
  int resets = 0;
  I8042 i8042{[this] { ++resets; }, line};
};

// Scanning disabled (0xf5), an ID reply half read, scancode set command awaiting its
// parameter, the controller's output port read queued behind the keyboard's reply.
void drive(Kbc& k) {
  out8(k.i8042, kData, 0xf5);
  REQUIRE(in8(k.i8042, kData) == 0xfa);
  out8(k.i8042, kData, 0xf2);  // ACK ab 83: ACK in the output buffer, ab 83 queued
  out8(k.i8042, kData, 0xf0);  // ACK queued, 0xf0 pending
  out8(k.i8042, kCommand, 0xd0);
}

// What the guest sees: status and data reads, the parameter, a set query, scanning back on,
// Ctrl-Alt-Del; plus the IRQ levels driven meanwhile.
std::vector<int> script(Kbc& k) {
  std::vector<int> seen;
  auto drain = [&] {
    for (int i = 0; i < 16 && (in8(k.i8042, kCommand) & 0x01) != 0; ++i) {
      seen.push_back(in8(k.i8042, kCommand));
      seen.push_back(in8(k.i8042, kData));
    }
  };
  drain();
  out8(k.i8042, kData, 0x03);  // the parameter: scancode set 3
  out8(k.i8042, kData, 0xf0);
  out8(k.i8042, kData, 0x00);  // query: ACK ACK 3
  drain();
  seen.push_back(k.i8042.inject_ctrl_alt_del() ? 1 : 0);  // scanning is off
  out8(k.i8042, kData, 0xf4);
  seen.push_back(k.i8042.inject_ctrl_alt_del() ? 1 : 0);
  drain();
  seen.push_back(-1);
  for (bool level : k.line->take()) {
    seen.push_back(level ? 1 : 0);
  }
  seen.push_back(k.resets);
  return seen;
}

TEST_CASE("device state: i8042 round trip", "[device-state][i8042]") {
  Kbc a;
  drive(a);
  const Bytes state = a.i8042.save_state();
  Kbc b;
  REQUIRE(b.i8042.restore_state(state));
  CHECK(b.line->take() == std::vector<bool>{true});  // a byte waits, keyboard IRQ enabled
  CHECK(b.i8042.save_state() == state);
  a.line->take();
  const auto seen_a = script(a);
  CHECK(script(b) == seen_a);
  // ACK, the output port, ID ab 83 (83 translated to 41), the pending command's ACK, ...
  REQUIRE(seen_a.size() > 10);
  CHECK(seen_a[1] == 0xfa);
  CHECK(seen_a[3] == 0x03);
  CHECK(seen_a[5] == 0xab);
  CHECK(seen_a[7] == 0x41);
  CHECK(seen_a[9] == 0xfa);
}

TEST_CASE("device state: i8042 refusals", "[device-state][i8042]") {
  Kbc a;
  drive(a);
  const Bytes good = a.i8042.save_state();
  // 8 attached, 9 command byte, 10 output port, 11 last read, 12 last was command,
  // 13 data target, 14 output buffer (2 bytes), 20 keyboard queue (3 bytes), 27 pending
  // command, 28 scancode set, 29 scanning, 30 break prefix.
  REQUIRE(good.size() == 31);
  REQUIRE(good[27] == std::byte{0xf0});

  Kbc b;
  out8(b.i8042, kCommand, 0xad);  // a state of its own: keyboard interface disabled
  const Restore restore = [&](std::span<const std::byte> s) { return b.i8042.restore_state(s); };
  const Snapshot snapshot = [&] { return b.i8042.save_state(); };
  check_framing_refused(good, restore, snapshot);
  check_refused(with_byte(good, 8, 2), restore, snapshot, "keyboard attached is 2");
  check_refused(with_byte(good, 12, 7), restore, snapshot, "last write was command");
  check_refused(with_byte(good, 13, 4), restore, snapshot, "data target 4");
  check_refused(with_byte(good, 27, 0x42), restore, snapshot, "pending keyboard command 0x42");
  check_refused(with_byte(good, 28, 0), restore, snapshot, "scancode set 0");
  check_refused(with_byte(good, 28, 4), restore, snapshot, "scancode set 4");
  check_refused(with_byte(good, 29, 2), restore, snapshot, "keyboard scanning");
  check_refused(with_byte(good, 30, 2), restore, snapshot, "break prefix");
  check_refused(with_string(good, 14, 20, 9, 0xfa), restore, snapshot, "output buffer");
  check_refused(with_string(good, 20, 27, I8042::kKeyboardQueueCapacity + 1, 0xfa), restore,
                snapshot, "keyboard queue");
  check_refused(with_string(good, 14, 20, 0, 0), restore, snapshot, "empty output buffer");
  CHECK(b.line->levels.empty());

  // A controller without a keyboard refuses a keyboard's state and keyboard bytes.
  I8042 bare([] {});
  const Restore restore_bare = [&](std::span<const std::byte> s) { return bare.restore_state(s); };
  const Snapshot snapshot_bare = [&] { return bare.save_state(); };
  check_refused(good, restore_bare, snapshot_bare, "this controller has none");
  const Bytes bare_good = bare.save_state();
  REQUIRE(bare.restore_state(bare_good));
  REQUIRE(bare_good.size() == 26);
  check_refused(with_string(bare_good, 18, 22, 1, 0xaa), restore_bare, snapshot_bare,
                "without a keyboard");
}

// ---- PciConfigSpace and PciRoot ----------------------------------------------------------

constexpr uint64_t kWindow = 0xc0000000;
constexpr uint64_t kWindowSize = 0x10000000;

PciConfigSpace make_space() {
  PciConfigSpace space(PciIds{.vendor_id = 0x1af4,
                              .device_id = 0x1041,
                              .revision = 1,
                              .class_code = 0x020000,
                              .subsystem_vendor_id = 0x1af4,
                              .subsystem_id = 0x40});
  REQUIRE(space.add_memory_bar(0, 0x1000));
  REQUIRE(space.add_memory_bar(2, 0x10000));
  const std::array<std::byte, 6> body{std::byte{1}, std::byte{2}, std::byte{3},
                                      std::byte{4}, std::byte{5}, std::byte{6}};
  const std::array<std::byte, 6> writable{std::byte{0}, std::byte{0xff}};
  REQUIRE(space.add_capability(0x09, body, writable));
  REQUIRE(space.add_capability(0x11, std::span(body).first(2)));
  return space;
}

void write32(PciConfigSpace& space, uint16_t offset, uint32_t value) {
  space.write(offset, std::as_bytes(std::span(&value, 1)));
}

Bytes read_all(const PciConfigSpace& space) {
  Bytes out(PciConfigSpace::kLegacySize);
  space.read(0, out);
  return out;
}

// BAR 0 sized and moved, BAR 2 moved, memory + bus master on, interrupt line, the writable
// capability byte.
void drive(PciConfigSpace& space) {
  write32(space, PciConfigSpace::kBar0, 0xffffffff);
  write32(space, PciConfigSpace::kBar0, 0xc0042000);
  write32(space, PciConfigSpace::kBar0 + 8, 0xc0050000);
  write32(space, PciConfigSpace::kCommand, 0x0006);
  write32(space, PciConfigSpace::kInterruptLine, 0x0000000b);
  write32(space, PciConfigSpace::kCapabilitiesStart, 0x77770000);  // only byte 3 writable
}

TEST_CASE("device state: PCI config space round trip", "[device-state][pci]") {
  PciConfigSpace a = make_space();
  drive(a);
  const Bytes state = a.save_state();
  PciConfigSpace b = make_space();
  REQUIRE(b.restore_state(state));
  CHECK(read_all(b) == read_all(a));
  const auto bars = b.bars();
  REQUIRE(bars.size() == 2);
  CHECK(bars[0].address == GuestAddress(0xc0042000));
  CHECK(bars[0].decoding);
  CHECK(bars[1].address == GuestAddress(0xc0050000));
  CHECK(b.load(PciConfigSpace::kCapabilitiesStart + 3, 1) == 0x77);
  CHECK(b.load(PciConfigSpace::kCapabilitiesStart + 2, 1) == 0x01);  // read-only byte kept
  // The write masks still come from construction: sizing BAR 0 reads its size back.
  write32(b, PciConfigSpace::kBar0, 0xffffffff);
  CHECK(b.load(PciConfigSpace::kBar0, 4) == 0xfffff000);
  write32(b, PciConfigSpace::kVendorId, 0);
  CHECK(b.load(PciConfigSpace::kVendorId, 4) == 0x10411af4);
}

TEST_CASE("device state: PCI config space refusals", "[device-state][pci]") {
  PciConfigSpace a = make_space();
  drive(a);
  const Bytes good = a.save_state();
  REQUIRE(good.size() == 12 + 256);
  auto at = [](size_t config_offset) { return 12 + config_offset; };

  PciConfigSpace b = make_space();
  write32(b, PciConfigSpace::kInterruptLine, 5);
  const Restore restore = [&](std::span<const std::byte> s) { return b.restore_state(s); };
  const Snapshot snapshot = [&] { return b.save_state(); };
  check_framing_refused(good, restore, snapshot);
  check_refused(with_string(good, 8, good.size(), 255, 0), restore, snapshot, "255 bytes");
  check_refused(with_string(good, 8, good.size(), 4096, 0), restore, snapshot, "config space");
  check_refused(with_byte(good, at(0x00), 0xf5), restore, snapshot, "vendor/device ID");
  check_refused(with_byte(good, at(0x04), 0x07), restore, snapshot, "command");  // I/O space
  check_refused(with_byte(good, at(0x06), 0x00), restore, snapshot, "status");
  check_refused(with_byte(good, at(0x0e), 0x80), restore, snapshot, "header type");
  // BAR 0: a type bit, then an address bit below its 4 KiB size; BAR 1 is not implemented.
  check_refused(with_byte(good, at(0x10), 0x08), restore, snapshot, "BAR 0");
  check_refused(with_byte(good, at(0x11), 0x21), restore, snapshot, "BAR 0");
  check_refused(with_byte(good, at(0x17), 0x80), restore, snapshot, "BAR 1");
  check_refused(with_byte(good, at(0x36), 0x01), restore, snapshot, "type-0 header");
  check_refused(with_byte(good, at(0x34), 0x48), restore, snapshot, "capabilities pointer");
  check_refused(with_byte(good, at(0x3d), 0x01), restore, snapshot, "interrupt pin");
  check_refused(with_byte(good, at(0x41), 0x00), restore, snapshot, "capability header at 0x40");
  check_refused(with_byte(good, at(0x48), 0x05), restore, snapshot, "capability header at 0x48");
}

// A PCI function around make_space(); records bar_mapped calls.
class FakePciDevice : public PciDevice {
 public:
  void config_read(uint16_t offset, std::span<std::byte> data) override {
    space.read(offset, data);
  }
  void config_write(uint16_t offset, std::span<const std::byte> data) override {
    space.write(offset, data);
  }
  std::vector<PciBar> bars() const override { return space.bars(); }
  void bar_read(uint8_t index, uint64_t offset, std::span<std::byte> data) override {
    reads.emplace_back(index, offset);
    std::fill(data.begin(), data.end(), std::byte{0x5a});
  }
  void bar_write(uint8_t, uint64_t, std::span<const std::byte>) override {}
  void bar_mapped(uint8_t index, std::optional<GuestAddress> base) override {
    mapped.emplace_back(index, base);
  }

  PciConfigSpace space = make_space();
  std::vector<std::pair<uint8_t, uint64_t>> reads;
  std::vector<std::pair<uint8_t, std::optional<GuestAddress>>> mapped;
};

uint32_t get32(BusDevice& dev, uint64_t offset) {
  uint32_t v = 0;
  dev.read(offset, std::as_writable_bytes(std::span(&v, 1)));
  return v;
}

void put32(BusDevice& dev, uint64_t offset, uint32_t v) {
  dev.write(offset, std::as_bytes(std::span(&v, 1)));
}

struct Machine {
  std::shared_ptr<PciRoot> root = PciRoot::create(GuestAddress(kWindow), kWindowSize);
  std::shared_ptr<FakePciDevice> dev = std::make_shared<FakePciDevice>();
  std::shared_ptr<BusDevice> io = root->config_io_device();
  std::shared_ptr<BusDevice> ecam = root->ecam_device();
  std::shared_ptr<BusDevice> window = root->bar_window_device();

  explicit Machine(bool with_device = true) {
    if (with_device) {
      auto slot = root->add_device(dev);
      REQUIRE(slot);
      REQUIRE(*slot == 1);
      dev->mapped.clear();
    }
  }
};

constexpr uint64_t kSlot1 = 1 << 15;

TEST_CASE("device state: PCI root round trip re-announces moved BARs", "[device-state][pci]") {
  Machine a;
  // The guest moves BAR 0 and turns decoding on (ECAM), sets the host bridge's interrupt
  // line (conf1) and leaves CONFIG_ADDRESS pointing at slot 1's BAR 2.
  put32(*a.ecam, kSlot1 + PciConfigSpace::kBar0, 0xc0042000);
  put32(*a.ecam, kSlot1 + PciConfigSpace::kCommand, 0x0002);
  put32(*a.io, 0, 0x80000000 | PciConfigSpace::kInterruptLine);
  put32(*a.io, 4, 0x0a);
  put32(*a.io, 0, 0x80000818);
  const Bytes root_state = a.root->save_state();
  const Bytes dev_state = a.dev->space.save_state();

  Machine b;
  REQUIRE(b.dev->space.restore_state(dev_state));  // the device's owner restores it first
  CHECK(b.dev->mapped.empty());                    // the space itself announces nothing
  REQUIRE(b.root->restore_state(root_state));
  // Both BARs now decode: BAR 0 where the guest moved it, BAR 2 where it was assigned.
  REQUIRE(b.dev->mapped.size() == 2);
  CHECK(b.dev->mapped[0] == std::pair{uint8_t{0}, std::optional(GuestAddress(0xc0042000))});
  CHECK(b.dev->mapped[1].first == 2);
  CHECK(b.dev->mapped[1].second == a.dev->space.bars()[1].address);
  CHECK(b.root->save_state() == root_state);
  CHECK(get32(*b.io, 0) == 0x80000818);
  CHECK(get32(*b.io, 4) == get32(*a.io, 4));
  CHECK(get32(*b.ecam, PciConfigSpace::kInterruptLine) == 0x0a);
  // The window dispatches the moved BAR on both.
  CHECK(get32(*a.window, 0x42010) == 0x5a5a5a5a);
  CHECK(get32(*b.window, 0x42010) == 0x5a5a5a5a);
  CHECK(b.dev->reads == a.dev->reads);
  CHECK(b.dev->reads == std::vector<std::pair<uint8_t, uint64_t>>{{0, 0x10}});
}

TEST_CASE("device state: PCI root refusals", "[device-state][pci]") {
  Machine a;
  put32(*a.io, 0, 0x80000810);
  const Bytes good = a.root->save_state();
  // 8 CONFIG_ADDRESS, 12 occupied slots, 16 host bridge state (u32 length, 268 bytes).
  REQUIRE(good.size() == 16 + 4 + 268);

  Machine b;
  put32(*b.io, 0, 0x80000004);
  const Restore restore = [&](std::span<const std::byte> s) { return b.root->restore_state(s); };
  const Snapshot snapshot = [&] { return b.root->save_state(); };
  check_framing_refused(good, restore, snapshot);
  check_refused(with_byte(good, 8, 0x12), restore, snapshot, "bits 1:0 set");
  check_refused(with_byte(good, 12, 0x07), restore, snapshot, "slots 0x00000007 occupied");
  check_refused(with_byte(good, 20 + 8 + 4 + 0x0b, 0x02), restore, snapshot,
                "host bridge");  // the bridge's class code
  check_refused(with_string(good, 16, good.size(), 1025, 0), restore, snapshot, "host bridge");
  CHECK(b.dev->mapped.empty());
  CHECK(get32(*b.io, 0) == 0x80000004);

  Machine empty(false);
  const Restore restore_empty = [&](std::span<const std::byte> s) {
    return empty.root->restore_state(s);
  };
  const Snapshot snapshot_empty = [&] { return empty.root->save_state(); };
  check_refused(good, restore_empty, snapshot_empty, "this root has 0x00000001");
}

// ---- Msix --------------------------------------------------------------------------------

struct VectorLog {
  std::vector<MsiMessage> routes;
  std::vector<MsiMessage> fired;
};

class RecordingVector : public MsiVector {
 public:
  explicit RecordingVector(VectorLog& log) : log_(log) {}
  Result<void> set_route(const MsiMessage& message) override {
    log_.routes.push_back(message);
    current_ = message;
    return {};
  }
  Result<void> trigger() override {
    log_.fired.push_back(current_);
    return {};
  }

 private:
  VectorLog& log_;
  MsiMessage current_;
};

class RecordingController : public MsiController {
 public:
  Result<std::unique_ptr<MsiVector>> allocate_vector() override {
    logs.push_back(std::make_unique<VectorLog>());
    return std::unique_ptr<MsiVector>(std::make_unique<RecordingVector>(*logs.back()));
  }
  std::vector<std::unique_ptr<VectorLog>> logs;
};

void table32(Msix& msix, uint64_t offset, uint32_t value) {
  msix.write_table(offset, std::as_bytes(std::span(&value, 1)));
}

void program(Msix& msix, uint16_t vector, uint64_t address, uint32_t data) {
  table32(msix, vector * 16 + 0, static_cast<uint32_t>(address));
  table32(msix, vector * 16 + 4, static_cast<uint32_t>(address >> 32));
  table32(msix, vector * 16 + 8, data);
}

void set_masked(Msix& msix, uint16_t vector, bool masked) {
  table32(msix, vector * 16 + 12, masked ? 1 : 0);
}

Bytes table_and_pba(const Msix& msix) {
  Bytes out(msix.table_bytes() + msix.pba_bytes());
  msix.read_table(0, std::span(out).first(msix.table_bytes()));
  msix.read_pba(0, std::span(out).subspan(msix.table_bytes()));
  return out;
}

std::unique_ptr<Msix> make_msix(MsiController& controller, uint16_t vectors) {
  auto msix = Msix::create(controller, vectors);
  REQUIRE(msix);
  return std::move(msix).value();
}

const MsiMessage kMsg0{0xfee00000, 0x4021};
const MsiMessage kMsg1{0xfee01000, 0x4032};

// Enabled; vector 0 programmed and unmasked; vector 1 programmed, masked, raised (pending);
// vector 2 untouched.
void drive(Msix& msix) {
  msix.set_message_control(Msix::kControlEnable);
  program(msix, 0, kMsg0.address, kMsg0.data);
  set_masked(msix, 0, false);
  program(msix, 1, kMsg1.address, kMsg1.data);
  REQUIRE(msix.trigger(1));
  REQUIRE(msix.pending(1));
}

TEST_CASE("device state: MSI-X round trip re-programs routes, keeps pending bits",
          "[device-state][msix]") {
  RecordingController ca;
  auto a = make_msix(ca, 3);
  drive(*a);
  const Bytes state = a->save_state();

  RecordingController cb;
  auto b = make_msix(cb, 3);
  REQUIRE(b->restore_state(state));
  // Routes as the guest's table writes made them: only the deliverable vector has one.
  CHECK(cb.logs[0]->routes == std::vector<MsiMessage>{kMsg0});
  CHECK(cb.logs[1]->routes.empty());
  CHECK(cb.logs[2]->routes.empty());
  CHECK(cb.logs[1]->fired.empty());
  CHECK(b->enabled());
  CHECK(b->pending(1));
  CHECK(table_and_pba(*b) == table_and_pba(*a));
  CHECK(b->save_state() == state);

  // Unmasking delivers the pending vector once, on both.
  set_masked(*a, 1, false);
  set_masked(*b, 1, false);
  CHECK(cb.logs[1]->fired == std::vector<MsiMessage>{kMsg1});
  CHECK(cb.logs[1]->fired == ca.logs[1]->fired);
  CHECK_FALSE(b->pending(1));
  CHECK(b->trigger(0));
  CHECK(cb.logs[0]->fired == std::vector<MsiMessage>{kMsg0});
}

TEST_CASE("device state: MSI-X pending under the function mask, through the GSI router",
          "[device-state][msix]") {
  // The routing table GsiRouter would hand to KVM_SET_GSI_ROUTING (recorded, no VM).
  RecordingController ca;
  auto a = make_msix(ca, 2);
  drive(*a);
  a->set_message_control(Msix::kControlEnable | Msix::kControlFunctionMask);
  REQUIRE(a->trigger(0));
  const Bytes state = a->save_state();

  std::vector<std::vector<kvm_irq_routing_entry>> commits;
  GsiRouter router(
      [&](std::span<const kvm_irq_routing_entry> t) -> Result<void> {
        commits.emplace_back(t.begin(), t.end());
        return {};
      },
      1024);
  REQUIRE(router.install_defaults());
  struct RouterVector : MsiVector {
    RouterVector(GsiRouter& r, uint32_t g) : router(r), gsi(g) {}
    Result<void> set_route(const MsiMessage& m) override { return router.set_msi_route(gsi, m); }
    Result<void> trigger() override {
      ++fired;
      return {};
    }
    GsiRouter& router;
    uint32_t gsi;
    int fired = 0;
  };
  struct RouterController : MsiController {
    explicit RouterController(GsiRouter& r) : router(r) {}
    Result<std::unique_ptr<MsiVector>> allocate_vector() override {
      PETREL_TRY_ASSIGN(uint32_t gsi, router.allocate());
      auto v = std::make_unique<RouterVector>(router, gsi);
      vectors.push_back(v.get());
      return std::unique_ptr<MsiVector>(std::move(v));
    }
    GsiRouter& router;
    std::vector<RouterVector*> vectors;
  } cb(router);
  auto b = make_msix(cb, 2);
  const size_t defaults = router.committed().size();
  REQUIRE(b->restore_state(state));
  CHECK(router.committed().size() == defaults);  // function masked: no route yet
  CHECK(b->pending(0));
  CHECK(cb.vectors[0]->fired == 0);
  b->set_message_control(Msix::kControlEnable);  // the guest clears the function mask
  const auto table = router.committed();
  REQUIRE(table.size() == defaults + 1);
  CHECK(table.back().gsi == cb.vectors[0]->gsi);
  CHECK(table.back().type == KVM_IRQ_ROUTING_MSI);
  CHECK(table.back().u.msi.address_lo == kMsg0.address);
  CHECK(table.back().u.msi.data == kMsg0.data);
  CHECK(cb.vectors[0]->fired == 1);
  CHECK_FALSE(b->pending(0));
}

template <typename T>
T take(Result<T> r, const char* what) {
  INFO(what << ": " << (r.ok() ? std::string("ok") : r.error().to_string()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Whether `vector` is set in the LAPIC's IRR (the register at 0x200 + 0x10 * (vector / 32)).
bool irr_has(const petrel::KvmVcpu& vcpu, uint8_t vector) {
  const auto lapic = take(vcpu.get_lapic(), "KVM_GET_LAPIC");
  uint32_t irr = 0;
  std::memcpy(&irr, &lapic.regs[0x200 + 0x10 * (vector / 32)], 4);
  return ((irr >> (vector % 32)) & 1) != 0;
}

// irqfd injection may complete on a KVM worker: poll for up to a second.
bool wait_irr(const petrel::KvmVcpu& vcpu, uint8_t vector) {
  for (int i = 0; i < 100; ++i) {
    if (irr_has(vcpu, vector)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// The real path: the restored table is programmed into KVM's GSI routing through
// KvmMsiController (KVM_SET_GSI_ROUTING, api.rst 4.52; irqfds, 4.75), and an MSI raised
// afterwards, or left pending and unmasked afterwards, reaches the vCPU's LAPIC IRR.
TEST_CASE("device state: MSI-X restored onto KVM routes reach the LAPIC",
          "[device-state][msix][kvm]") {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    WARN("skipped: /dev/kvm is not readable and writable here");
    return;
  }
  constexpr uint8_t kVector0 = 0x41;
  constexpr uint8_t kVector1 = 0x52;
  // Fixed delivery, edge, physical destination APIC ID 0 (Intel SDM vol. 3 section 11.11).
  const MsiMessage msg0{0xfee00000, kVector0};
  const MsiMessage msg1{0xfee00000, kVector1};
  RecordingController ca;
  auto a = make_msix(ca, 2);
  a->set_message_control(Msix::kControlEnable);
  program(*a, 0, msg0.address, msg0.data);
  set_masked(*a, 0, false);
  program(*a, 1, msg1.address, msg1.data);
  REQUIRE(a->trigger(1));
  const Bytes state = a->save_state();

  auto kvm = take(petrel::KvmSystem::open(), "open /dev/kvm");
  auto vm = take(kvm.create_vm(), "KVM_CREATE_VM");
  REQUIRE(vm.create_irqchip());
  auto vcpu = take(vm.create_vcpu(0), "KVM_CREATE_VCPU");
  // Software-enable the LAPIC (SVR bit 8) so that it accepts fixed interrupts.
  auto lapic = take(vcpu.get_lapic(), "KVM_GET_LAPIC");
  lapic.regs[0xf0 + 1] |= 0x01;
  REQUIRE(vcpu.set_lapic(lapic));
  auto router = GsiRouter::for_vm(vm);
  REQUIRE(router->install_defaults());
  petrel::KvmMsiController controller(vm, *router);
  auto b = make_msix(controller, 2);
  const size_t defaults = router->committed().size();

  REQUIRE(b->restore_state(state));
  const auto table = router->committed();
  REQUIRE(table.size() == defaults + 1);  // vector 0's route; vector 1 is masked
  CHECK(table.back().u.msi.data == kVector0);
  CHECK_FALSE(irr_has(vcpu, kVector0));
  CHECK(b->trigger(0));
  CHECK(wait_irr(vcpu, kVector0));
  CHECK_FALSE(irr_has(vcpu, kVector1));
  CHECK(b->pending(1));
  set_masked(*b, 1, false);
  CHECK(wait_irr(vcpu, kVector1));
  CHECK_FALSE(b->pending(1));
}

TEST_CASE("device state: MSI-X refusals", "[device-state][msix]") {
  RecordingController ca;
  auto a = make_msix(ca, 3);
  drive(*a);
  const Bytes good = a->save_state();
  // 8 enable, 9 function mask, 10 count, then 14 bytes per vector (mask +12, pending +13).
  REQUIRE(good.size() == 14 + 3 * 14);

  RecordingController cb;
  auto b = make_msix(cb, 3);
  program(*b, 2, 0xfee00000, 0x99);
  const Restore restore = [&](std::span<const std::byte> s) { return b->restore_state(s); };
  const Snapshot snapshot = [&] { return b->save_state(); };
  check_framing_refused(good, restore, snapshot);
  check_refused(with_byte(good, 8, 2), restore, snapshot, "MSI-X enable is 2");
  check_refused(with_byte(good, 9, 3), restore, snapshot, "function mask is 3");
  check_refused(with_byte(good, 10, 2), restore, snapshot, "table size 2 differs");
  check_refused(with_byte(good, 13, 1), restore, snapshot, "table size 16777219");
  check_refused(with_byte(good, 14 + 14 + 12, 2), restore, snapshot, "entry 1 mask");
  check_refused(with_byte(good, 14 + 28 + 13, 9), restore, snapshot, "entry 2 pending bit");
  RecordingController cc;
  auto four = make_msix(cc, 4);
  check_refused(four->save_state(), restore, snapshot, "table size 4 differs");
  for (const auto& log : cb.logs) {
    CHECK(log->routes.empty());
    CHECK(log->fired.empty());
  }
}

}  // namespace
