// PciRoot and PciConfigSpace through the guest's access paths: configuration mechanism #1
// ports, ECAM and the BAR window.
#include <array>
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "devices/pci_config_space.h"
#include "devices/pci_root.h"

using petrel::BusDevice;
using petrel::GuestAddress;
using petrel::PciBar;
using petrel::PciConfigSpace;
using petrel::PciDevice;
using petrel::PciIds;
using petrel::PciRoot;

namespace {

constexpr uint64_t kWindow = 0xc0000000;
constexpr uint64_t kWindowSize = 0x10000000;

// A device with a 4 KiB BAR 0, a 64 KiB BAR 2 and two capabilities; records BAR traffic.
class FakePciDevice : public PciDevice {
 public:
  FakePciDevice()
      : config_(PciIds{.vendor_id = 0x1af4,
                       .device_id = 0x1041,
                       .revision = 1,
                       .class_code = 0x020000,
                       .subsystem_vendor_id = 0x1af4,
                       .subsystem_id = 0x40}) {
    REQUIRE(config_.add_memory_bar(0, 0x1000));
    REQUIRE(config_.add_memory_bar(2, 0x10000));
    const std::array<std::byte, 6> body{std::byte{1}, std::byte{2}, std::byte{3},
                                        std::byte{4}, std::byte{5}, std::byte{6}};
    const std::array<std::byte, 6> writable{std::byte{0}, std::byte{0xff}};
    auto first = config_.add_capability(0x09, body, writable);
    REQUIRE(first);
    first_cap = *first;
    auto second = config_.add_capability(0x11, std::span(body).first(2));
    REQUIRE(second);
    second_cap = *second;
  }

  void config_read(uint16_t offset, std::span<std::byte> data) override {
    config_.read(offset, data);
  }
  void config_write(uint16_t offset, std::span<const std::byte> data) override {
    config_.write(offset, data);
  }
  std::vector<PciBar> bars() const override { return config_.bars(); }
  void bar_read(uint8_t index, uint64_t offset, std::span<std::byte> data) override {
    reads.push_back({index, offset});
    std::fill(data.begin(), data.end(), std::byte{0x5a});
  }
  void bar_write(uint8_t index, uint64_t offset, std::span<const std::byte> data) override {
    writes.push_back({index, offset});
    last_write.assign(data.begin(), data.end());
  }
  void bar_mapped(uint8_t index, std::optional<GuestAddress> base) override {
    mapped.push_back({index, base});
  }

  struct Access {
    uint8_t bar;
    uint64_t offset;
  };
  std::vector<Access> reads;
  std::vector<Access> writes;
  std::vector<std::byte> last_write;
  std::vector<std::pair<uint8_t, std::optional<GuestAddress>>> mapped;
  uint8_t first_cap = 0;
  uint8_t second_cap = 0;

 private:
  PciConfigSpace config_;
};

uint32_t get(BusDevice& dev, uint64_t offset, size_t width) {
  std::array<std::byte, 8> buf{};
  dev.read(offset, std::span(buf).first(width));
  uint64_t value = 0;
  std::memcpy(&value, buf.data(), width);
  return static_cast<uint32_t>(value);
}

void put(BusDevice& dev, uint64_t offset, size_t width, uint64_t value) {
  std::array<std::byte, 8> buf{};
  std::memcpy(buf.data(), &value, width);
  dev.write(offset, std::span<const std::byte>(buf).first(width));
}

uint32_t conf1_address(uint32_t bus, uint32_t slot, uint32_t fn, uint32_t reg) {
  return (1u << 31) | (bus << 16) | (slot << 11) | (fn << 8) | (reg & 0xfc);
}

uint32_t conf1_read(BusDevice& io, uint32_t slot, uint32_t reg, size_t width, uint32_t bus = 0,
                    uint32_t fn = 0) {
  put(io, 0, 4, conf1_address(bus, slot, fn, reg));
  return get(io, 4 + (reg & 3), width);
}

void conf1_write(BusDevice& io, uint32_t slot, uint32_t reg, size_t width, uint32_t value) {
  put(io, 0, 4, conf1_address(0, slot, 0, reg));
  put(io, 4 + (reg & 3), width, value);
}

uint64_t ecam_offset(uint32_t slot, uint32_t fn, uint32_t reg) {
  return (uint64_t{slot} << 15) | (uint64_t{fn} << 12) | reg;
}

struct Fixture {
  std::shared_ptr<PciRoot> root = PciRoot::create(GuestAddress(kWindow), kWindowSize);
  std::shared_ptr<FakePciDevice> dev = std::make_shared<FakePciDevice>();
  std::shared_ptr<BusDevice> io = root->config_io_device();
  std::shared_ptr<BusDevice> ecam = root->ecam_device();
  std::shared_ptr<BusDevice> window = root->bar_window_device();
  uint8_t slot = 0;

  Fixture() {
    auto s = root->add_device(dev);
    REQUIRE(s);
    slot = *s;
  }
};

}  // namespace

TEST_CASE("pci: host bridge at 00.0 and the added device at slot 1", "[pci]") {
  Fixture f;
  CHECK(f.slot == 1);
  CHECK(conf1_read(*f.io, 0, 0x00, 4) == 0x0d578086);
  CHECK(conf1_read(*f.io, 0, 0x08, 4) >> 8 == 0x060000);
  CHECK(conf1_read(*f.io, 0, 0x0e, 1) == 0);
  CHECK(conf1_read(*f.io, 1, 0x00, 2) == 0x1af4);
  CHECK(conf1_read(*f.io, 1, 0x02, 2) == 0x1041);
  CHECK(conf1_read(*f.io, 1, 0x08, 1) == 1);
  CHECK(conf1_read(*f.io, 1, 0x09, 1) == 0x00);
  CHECK(conf1_read(*f.io, 1, 0x0a, 2) == 0x0200);
  CHECK(conf1_read(*f.io, 1, 0x2c, 4) == 0x00401af4);
  CHECK(conf1_read(*f.io, 1, 0x3d, 1) == 0);  // no INTx pin
  // The address register reads back (bits 1:0 clear).
  put(*f.io, 0, 4, 0x80000803);
  CHECK(get(*f.io, 0, 4) == 0x80000800);
  // A byte write to 0xCFB (Linux's type-1 probe) does not change it.
  put(*f.io, 3, 1, 0x01);
  CHECK(get(*f.io, 0, 4) == 0x80000800);
}

TEST_CASE("pci: absent devices, functions and buses read all-ones", "[pci]") {
  Fixture f;
  CHECK(conf1_read(*f.io, 2, 0, 4) == 0xffffffff);
  CHECK(conf1_read(*f.io, 31, 0, 2) == 0xffff);
  CHECK(conf1_read(*f.io, 1, 0, 4, /*bus=*/1) == 0xffffffff);
  CHECK(conf1_read(*f.io, 1, 0, 4, 0, /*fn=*/1) == 0xffffffff);
  CHECK(get(*f.ecam, ecam_offset(2, 0, 0), 4) == 0xffffffff);
  CHECK(get(*f.ecam, ecam_offset(1, 3, 0), 4) == 0xffffffff);
  // Enable bit clear: no configuration cycle.
  put(*f.io, 0, 4, conf1_address(0, 1, 0, 0) & ~(1u << 31));
  CHECK(get(*f.io, 4, 4) == 0xffffffff);
  // Writes to an absent slot go nowhere and do not crash.
  conf1_write(*f.io, 5, 0x04, 2, 0xffff);
  put(*f.ecam, ecam_offset(7, 0, 0x10), 4, 0xffffffff);
  CHECK(conf1_read(*f.io, 5, 0, 4) == 0xffffffff);
}

TEST_CASE("pci: conf1 and ECAM see the same configuration space", "[pci]") {
  Fixture f;
  for (uint32_t slot : {0u, 1u, 2u}) {
    for (uint32_t reg = 0; reg < 256; reg += 4) {
      INFO("slot " << slot << " reg " << reg);
      CHECK(conf1_read(*f.io, slot, reg, 4) == get(*f.ecam, ecam_offset(slot, 0, reg), 4));
    }
  }
  // A write through one path is seen through the other, in every width.
  put(*f.ecam, ecam_offset(1, 0, 0x3c), 1, 0x0b);
  CHECK(conf1_read(*f.io, 1, 0x3c, 1) == 0x0b);
  conf1_write(*f.io, 1, 0x0c, 1, 0x10);
  CHECK(get(*f.ecam, ecam_offset(1, 0, 0x0c), 1) == 0x10);
  CHECK(conf1_read(*f.io, 1, 0x3e, 2) == get(*f.ecam, ecam_offset(1, 0, 0x3e), 2));
  // PCIe extended space exists and is empty (no extended capabilities).
  CHECK(get(*f.ecam, ecam_offset(1, 0, 0x100), 4) == 0);
  CHECK(get(*f.ecam, ecam_offset(1, 0, 0xffc), 4) == 0);
}

TEST_CASE("pci: read-only fields refuse writes", "[pci]") {
  Fixture f;
  conf1_write(*f.io, 1, 0x00, 4, 0x12345678);
  conf1_write(*f.io, 1, 0x08, 4, 0xffffffff);
  conf1_write(*f.io, 1, 0x2c, 4, 0);
  conf1_write(*f.io, 1, 0x34, 1, 0x80);
  conf1_write(*f.io, 1, 0x3d, 1, 1);
  conf1_write(*f.io, 1, 0x06, 2, 0xffff);
  CHECK(conf1_read(*f.io, 1, 0x00, 4) == 0x10411af4);
  CHECK(conf1_read(*f.io, 1, 0x08, 4) == 0x02000001);
  CHECK(conf1_read(*f.io, 1, 0x2c, 4) == 0x00401af4);
  CHECK(conf1_read(*f.io, 1, 0x34, 1) == f.dev->first_cap);
  CHECK(conf1_read(*f.io, 1, 0x3d, 1) == 0);
  CHECK(conf1_read(*f.io, 1, 0x06, 2) == PciConfigSpace::kStatusCapabilities);
  // Command: only the defined writable bits stick (no I/O space: no I/O BARs).
  conf1_write(*f.io, 1, 0x04, 2, 0xffff);
  CHECK(conf1_read(*f.io, 1, 0x04, 2) == 0x0546);
  // Unused BARs and the expansion ROM BAR size to 0 (not implemented).
  conf1_write(*f.io, 1, 0x14, 4, 0xffffffff);
  conf1_write(*f.io, 1, 0x30, 4, 0xffffffff);
  CHECK(conf1_read(*f.io, 1, 0x14, 4) == 0);
  CHECK(conf1_read(*f.io, 1, 0x30, 4) == 0);
}

TEST_CASE("pci: capability chain walk", "[pci]") {
  Fixture f;
  REQUIRE((conf1_read(*f.io, 1, 0x06, 2) & PciConfigSpace::kStatusCapabilities) != 0);
  std::vector<std::pair<uint32_t, uint32_t>> caps;  // (offset, id)
  uint32_t at = conf1_read(*f.io, 1, 0x34, 1);
  for (int guard = 0; at != 0 && guard < 48; ++guard) {
    CHECK(at % 4 == 0);
    CHECK(at >= 0x40);
    caps.emplace_back(at, conf1_read(*f.io, 1, at, 1));
    at = conf1_read(*f.io, 1, at + 1, 1);
  }
  REQUIRE(caps.size() == 2);
  CHECK(caps[0] == std::pair<uint32_t, uint32_t>{f.dev->first_cap, 0x09});
  CHECK(caps[1] == std::pair<uint32_t, uint32_t>{f.dev->second_cap, 0x11});
  // The capability body is there; only its masked byte is writable.
  // (Not dword-aligned: ECAM takes it, the conf1 data port could not.)
  const uint64_t body = ecam_offset(1, 0, f.dev->first_cap + 2);
  CHECK(get(*f.ecam, body, 4) == 0x04030201);
  put(*f.ecam, body, 4, 0xaabbccdd);
  CHECK(get(*f.ecam, body, 4) == 0x0403cc01);
  // The next pointer and ID are read-only.
  conf1_write(*f.io, 1, f.dev->first_cap, 2, 0);
  CHECK(conf1_read(*f.io, 1, f.dev->first_cap + 1, 1) == f.dev->second_cap);
  // The host bridge has no capabilities.
  CHECK(conf1_read(*f.io, 0, 0x06, 2) == 0);
  CHECK(conf1_read(*f.io, 0, 0x34, 1) == 0);
}

TEST_CASE("pci: BARs are pre-assigned, naturally aligned, decoding off", "[pci]") {
  Fixture f;
  const uint32_t bar0 = conf1_read(*f.io, 1, 0x10, 4);
  const uint32_t bar2 = conf1_read(*f.io, 1, 0x18, 4);
  CHECK(bar0 >= kWindow);
  CHECK(bar0 % 0x1000 == 0);
  CHECK(bar2 % 0x10000 == 0);
  CHECK((bar2 >= bar0 + 0x1000 || bar2 + 0x10000 <= bar0));
  CHECK(conf1_read(*f.io, 1, 0x04, 2) == 0);
  CHECK(f.dev->mapped.empty());
  // Not decoding: the window has nothing there.
  CHECK(get(*f.window, bar0 - kWindow, 4) == 0xffffffff);
  CHECK(f.dev->reads.empty());
  // A second device gets the next slot and BARs that do not overlap the first's.
  auto other = std::make_shared<FakePciDevice>();
  auto slot = f.root->add_device(other);
  REQUIRE(slot);
  CHECK(*slot == 2);
  const uint32_t other_bar0 = conf1_read(*f.io, 2, 0x10, 4);
  CHECK(other_bar0 >= bar2 + 0x10000);
}

TEST_CASE("pci: BAR sizing protocol and relocation move the window dispatch", "[pci]") {
  Fixture f;
  const uint32_t bar0 = conf1_read(*f.io, 1, 0x10, 4);
  conf1_write(*f.io, 1, 0x04, 2, PciConfigSpace::kCommandMemory);
  REQUIRE(f.dev->mapped.size() == 2);
  CHECK(f.dev->mapped[0].first == 0);
  CHECK(f.dev->mapped[0].second == GuestAddress(bar0));

  CHECK(get(*f.window, bar0 - kWindow + 0x10, 4) == 0x5a5a5a5a);
  REQUIRE(f.dev->reads.size() == 1);
  CHECK(f.dev->reads[0].bar == 0);
  CHECK(f.dev->reads[0].offset == 0x10);

  // Sizing as Linux does it: decoding off, all-ones, read the mask, restore.
  conf1_write(*f.io, 1, 0x04, 2, 0);
  CHECK(f.dev->mapped.back() == std::pair<uint8_t, std::optional<GuestAddress>>{2, std::nullopt});
  conf1_write(*f.io, 1, 0x10, 4, 0xffffffff);
  CHECK(conf1_read(*f.io, 1, 0x10, 4) == 0xfffff000);
  conf1_write(*f.io, 1, 0x18, 4, 0xffffffff);
  CHECK(conf1_read(*f.io, 1, 0x18, 4) == 0xffff0000);

  // Move BAR 0 to a new address in the window, turn decoding back on.
  const uint32_t moved = kWindow + 0x0800'0000;
  put(*f.ecam, ecam_offset(1, 0, 0x10), 4, moved | 0xabc);  // low bits are not writable
  CHECK(get(*f.ecam, ecam_offset(1, 0, 0x10), 4) == moved);
  conf1_write(*f.io, 1, 0x18, 4, kWindow + 0x0900'0000);
  size_t before = f.dev->mapped.size();
  conf1_write(*f.io, 1, 0x04, 2, PciConfigSpace::kCommandMemory);
  REQUIRE(f.dev->mapped.size() == before + 2);
  CHECK(f.dev->mapped[before].second == GuestAddress(moved));

  f.dev->reads.clear();
  CHECK(get(*f.window, bar0 - kWindow + 0x10, 4) == 0xffffffff);  // old place: nothing
  CHECK(f.dev->reads.empty());
  put(*f.window, moved - kWindow + 0xffe, 2, 0x1234);
  REQUIRE(f.dev->writes.size() == 1);
  CHECK(f.dev->writes[0].bar == 0);
  CHECK(f.dev->writes[0].offset == 0xffe);
  // An access that straddles the end of the BAR is refused.
  put(*f.window, moved - kWindow + 0xffe, 4, 0);
  CHECK(f.dev->writes.size() == 1);
  CHECK(get(*f.window, kWindow + 0x0900'0000 - kWindow + 0x20, 8) == 0x5a5a5a5a);
  CHECK(f.dev->reads.back().bar == 2);

  // A BAR moved outside the window stops answering and the device hears of it.
  before = f.dev->mapped.size();
  conf1_write(*f.io, 1, 0x10, 4, 0xfffff000);
  REQUIRE(f.dev->mapped.size() == before + 1);
  CHECK(f.dev->mapped.back() == std::pair<uint8_t, std::optional<GuestAddress>>{0, std::nullopt});
  // Rewriting the same address is no change.
  conf1_write(*f.io, 1, 0x18, 4, kWindow + 0x0900'0000);
  CHECK(f.dev->mapped.size() == before + 1);
}

TEST_CASE("pci: odd widths, unaligned and out-of-range accesses do not crash", "[pci]") {
  Fixture f;
  // 3- and 8-byte accesses to the data port are refused; 2 bytes at 0xCFD is fine.
  put(*f.io, 0, 4, conf1_address(0, 1, 0, 0));
  CHECK(get(*f.io, 4, 3) == 0xffffff);
  CHECK(get(*f.io, 5, 2) == 0x411a);
  CHECK(get(*f.io, 6, 4) == 0xffffffff);  // crosses 0xCFF
  put(*f.io, 4, 8, ~uint64_t{0});
  put(*f.io, 0, 2, 0);
  CHECK(get(*f.io, 0, 4) == conf1_address(0, 1, 0, 0));
  // ECAM: crossing the 4 KiB function boundary or past the region reads all-ones.
  CHECK(get(*f.ecam, ecam_offset(1, 0, 0xffe), 4) == 0xffffffff);
  CHECK(get(*f.ecam, PciRoot::kEcamSize + 4, 4) == 0xffffffff);
  CHECK(get(*f.ecam, ecam_offset(1, 0, 1), 2) == 0x411a);
  put(*f.ecam, ecam_offset(1, 0, 0xfff), 4, 0);
  // The BAR window: beyond the window, huge offsets.
  CHECK(get(*f.window, kWindowSize - 2, 4) == 0xffffffff);
  CHECK(get(*f.window, ~uint64_t{0} - 1, 4) == 0xffffffff);
  put(*f.window, ~uint64_t{0}, 8, 0);
  CHECK(conf1_read(*f.io, 1, 0x00, 4) == 0x10411af4);
}

TEST_CASE("pci config space: BAR and capability set-up errors", "[pci]") {
  PciConfigSpace config(PciIds{.vendor_id = 1, .device_id = 2});
  CHECK_FALSE(config.add_memory_bar(6, 0x1000));
  CHECK_FALSE(config.add_memory_bar(0, 0x1001));
  CHECK_FALSE(config.add_memory_bar(0, 8));
  CHECK(config.add_memory_bar(0, 0x1000));
  CHECK_FALSE(config.add_memory_bar(0, 0x1000));
  const std::array<std::byte, 80> big{};
  CHECK(config.add_capability(0x09, big));
  CHECK(config.add_capability(0x09, big));
  CHECK_FALSE(config.add_capability(0x09, big));  // would pass offset 255
  const std::array<std::byte, 2> mask{};
  CHECK_FALSE(config.add_capability(0x09, std::span(big).first(4), mask));
  // read()/write() clamp to the space.
  std::array<std::byte, 4> out{};
  config.read(254, out);
  CHECK(out[2] == std::byte{0});
  config.write(~uint64_t{0} - 1, out);
}
