// The state byte encoding (src/vmm/base/state_codec.h) and the VcpuState / VmKvmState
// formats on it: round trips, and every refusal of untrusted input.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "vmm/base/state_codec.h"
#include "vmm/vcpu_state.h"
#include "vmm/vm_kvm_state.h"

using petrel::decode_vcpu_state;
using petrel::decode_vm_kvm_state;
using petrel::ErrorCode;
using petrel::MsrValue;
using petrel::Result;
using petrel::StateReader;
using petrel::StateWriter;
using petrel::VcpuState;
using petrel::VmKvmState;

namespace {

using Bytes = std::vector<std::byte>;

template <typename T>
void fill_pattern(T& v, uint8_t seed) {
  auto* p = reinterpret_cast<uint8_t*>(&v);
  for (size_t i = 0; i < sizeof(T); ++i) {
    p[i] = static_cast<uint8_t>(seed + i * 7);
  }
}

VcpuState sample_vcpu() {
  VcpuState s;
  s.vcpu_id = 3;
  fill_pattern(s.mp_state, 1);
  fill_pattern(s.events, 2);
  fill_pattern(s.regs, 3);
  fill_pattern(s.sregs, 4);
  s.xsave.resize(4096 + 64);
  for (size_t i = 0; i < s.xsave.size(); ++i) {
    s.xsave[i] = static_cast<std::byte>(i * 13);
  }
  fill_pattern(s.xcrs, 5);
  s.xcrs.nr_xcrs = 1;
  fill_pattern(s.debugregs, 6);
  fill_pattern(s.lapic, 7);
  s.msrs = {{0x10, 0x123456789abcdef0}, {0xc0000081, 0x0023001000000000}, {0x4b564d10, 0x7400}};
  s.tsc_khz = 2596136;
  return s;
}

VmKvmState sample_vm() {
  VmKvmState s;
  fill_pattern(s.pic_master, 1);
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  fill_pattern(s.pic_slave, 2);
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  fill_pattern(s.ioapic, 3);
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  fill_pattern(s.pit, 4);
  fill_pattern(s.clock, 5);
  return s;
}

template <typename T>
bool same_bytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

bool same(const VcpuState& a, const VcpuState& b) {
  if (a.msrs.size() != b.msrs.size()) {
    return false;
  }
  for (size_t i = 0; i < a.msrs.size(); ++i) {
    if (a.msrs[i].index != b.msrs[i].index || a.msrs[i].value != b.msrs[i].value) {
      return false;
    }
  }
  return a.vcpu_id == b.vcpu_id && same_bytes(a.mp_state, b.mp_state) &&
         same_bytes(a.events, b.events) && same_bytes(a.regs, b.regs) &&
         same_bytes(a.sregs, b.sregs) && a.xsave == b.xsave && same_bytes(a.xcrs, b.xcrs) &&
         same_bytes(a.debugregs, b.debugregs) && same_bytes(a.lapic, b.lapic) &&
         a.tsc_khz == b.tsc_khz;
}

template <typename T>
void require_refused(const Result<T>& r, const std::string& needle) {
  REQUIRE_FALSE(r.ok());
  INFO(r.error().to_string());
  CHECK(r.error().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(r.error().to_string(), Catch::Contains(needle));
}

void put_u32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    b[at + i] = static_cast<std::byte>(v >> (8 * i));
  }
}

// A hand-built blob: header, count, then the given (tag, payload) records.
Bytes blob(uint32_t magic, uint32_t version, const std::vector<std::pair<uint32_t, Bytes>>& recs) {
  StateWriter w;
  w.header(magic, version);
  w.u32(static_cast<uint32_t>(recs.size()));
  for (const auto& [tag, payload] : recs) {
    w.record(tag, payload);
  }
  return std::move(w).take();
}

// The records of an encoded blob (as the writer laid them out), to build variants from.
std::vector<std::pair<uint32_t, Bytes>> split(const Bytes& encoded) {
  StateReader r(encoded, "test");
  REQUIRE(r.u32().ok());
  REQUIRE(r.u32().ok());
  auto recs = r.records(64, 1 << 20);
  REQUIRE(recs.ok());
  std::vector<std::pair<uint32_t, Bytes>> out;
  for (const auto& rec : *recs) {
    out.emplace_back(rec.tag, Bytes(rec.payload.begin(), rec.payload.end()));
  }
  return out;
}

constexpr uint32_t kVcpuMagic = 0x53435650;
constexpr uint32_t kVmMagic = 0x534d5650;

}  // namespace

TEST_CASE("state codec: integers are little-endian and byte strings length-prefixed") {
  StateWriter w;
  w.u8(0xab);
  w.u32(0x01020304);
  w.u64(0x1122334455667788);
  const Bytes payload = {std::byte{9}, std::byte{8}, std::byte{7}};
  w.bytes(payload);
  const Bytes& out = w.data();
  REQUIRE(out.size() == 1 + 4 + 8 + 4 + 3);
  CHECK(out[1] == std::byte{0x04});
  CHECK(out[4] == std::byte{0x01});
  CHECK(out[5] == std::byte{0x88});
  CHECK(out[13] == std::byte{3});

  StateReader r(out, "test blob");
  CHECK(*r.u8() == 0xab);
  CHECK(*r.u32() == 0x01020304);
  CHECK(*r.u64() == 0x1122334455667788);
  auto got = r.bytes(16);
  REQUIRE(got.ok());
  CHECK(Bytes(got->begin(), got->end()) == payload);
  CHECK(r.expect_end().ok());
  require_refused(r.u8(), "test blob at offset 20: truncated");
}

TEST_CASE("state codec: reader refuses oversize strings, short reads and trailing bytes") {
  StateWriter w;
  w.bytes(Bytes(10));
  const Bytes out = w.data();
  {
    StateReader r(out, "t");
    require_refused(r.bytes(9), "byte string of 10 bytes, at most 9 allowed");
    CHECK(r.offset() == 0);  // a refused read consumes nothing
  }
  {
    StateReader r{std::span(out).first(out.size() - 1), "t"};
    require_refused(r.bytes(100), "truncated: byte string of 10 bytes, 9 left");
  }
  {
    StateReader r{std::span(out).first(3), "t"};
    require_refused(r.u32(), "truncated");
  }
  {
    StateReader r(out, "t");
    REQUIRE(r.u32().ok());
    require_refused(r.expect_end(), "10 trailing bytes");
  }
  {
    StateWriter h;
    h.header(0x11111111, 2);
    StateReader r(h.data(), "t");
    require_refused(r.expect_header(0x22222222, 2), "bad magic 0x11111111");
    StateReader r2(h.data(), "t");
    require_refused(r2.expect_header(0x11111111, 1), "unsupported format version 2");
  }
}

TEST_CASE("state codec: a raw struct is stored with its size and read back only at that size") {
  kvm_regs regs;
  fill_pattern(regs, 9);
  StateWriter w;
  w.raw(regs);
  w.raw(uint32_t{7});
  StateReader r(w.data(), "t");
  auto back = r.read_raw<kvm_regs>("regs");
  REQUIRE(back.ok());
  CHECK(same_bytes(*back, regs));
  require_refused(r.read_raw<uint64_t>("a u64 field"), "a u64 field is 4 bytes, expected 8");
  StateReader r2(w.data(), "t");
  require_refused(r2.read_raw<kvm_sregs>("sregs"),
                  "sregs is 144 bytes, expected " + std::to_string(sizeof(kvm_sregs)));
}

TEST_CASE("state codec: a VcpuState survives encode and decode") {
  const VcpuState s = sample_vcpu();
  auto back = decode_vcpu_state(petrel::encode(s));
  INFO((back.ok() ? std::string() : back.error().to_string()));
  REQUIRE(back.ok());
  CHECK(same(*back, s));
  // Record order is free.
  auto recs = split(petrel::encode(s));
  std::reverse(recs.begin(), recs.end());
  auto reordered = decode_vcpu_state(blob(kVcpuMagic, 1, recs));
  REQUIRE(reordered.ok());
  CHECK(same(*reordered, s));
}

TEST_CASE("state codec: a VmKvmState survives encode and decode") {
  const VmKvmState s = sample_vm();
  auto back = decode_vm_kvm_state(petrel::encode(s));
  REQUIRE(back.ok());
  CHECK(same_bytes(back->pic_master, s.pic_master));
  CHECK(same_bytes(back->pic_slave, s.pic_slave));
  CHECK(same_bytes(back->ioapic, s.ioapic));
  CHECK(same_bytes(back->pit, s.pit));
  CHECK(same_bytes(back->clock, s.clock));
}

TEST_CASE("state codec: decode_vcpu_state refuses every malformed input") {
  const Bytes good = petrel::encode(sample_vcpu());
  const auto recs = split(good);
  REQUIRE(recs.size() == 11);

  require_refused(decode_vcpu_state(blob(kVmMagic, 1, recs)), "bad magic");
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 2, recs)), "unsupported format version 2");
  require_refused(decode_vcpu_state({}), "truncated");

  Bytes trailing = good;
  trailing.push_back(std::byte{0});
  require_refused(decode_vcpu_state(trailing), "1 trailing bytes");

  auto missing = recs;
  missing.erase(missing.begin() + 8);  // lapic
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, missing)), "record 'lapic' is missing");

  auto repeated = recs;
  repeated.push_back(recs[3]);
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, repeated)), "appears twice");

  auto unknown = recs;
  unknown.emplace_back(99, Bytes(4));
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, unknown)), "unknown record tag 99");

  auto short_regs = recs;
  short_regs[3].second.pop_back();
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, short_regs)),
                  "regs is " + std::to_string(sizeof(kvm_regs) - 1) + " bytes");

  auto small_xsave = recs;
  small_xsave[5].second.resize(4095);
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, small_xsave)), "xsave is 4095 bytes");

  auto huge_xsave = recs;
  huge_xsave[5].second.resize(512 * 1024);
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, huge_xsave)), "at most");

  auto many_xcrs = recs;
  put_u32(many_xcrs[6].second, 0, 17);  // nr_xcrs
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, many_xcrs)), "17 XCRs");

  auto msr_count = recs;
  put_u32(msr_count[9].second, 0, 4);  // 4 MSRs claimed, 3 present
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, msr_count)), "4 MSRs in 36 bytes");

  auto msr_tail = recs;
  msr_tail[9].second.push_back(std::byte{0});
  require_refused(decode_vcpu_state(blob(kVcpuMagic, 1, msr_tail)), "3 MSRs in 37 bytes");

  // A record count larger than the input can hold is refused before anything is allocated.
  Bytes count = good;
  put_u32(count, 8, 0xffffffff);
  require_refused(decode_vcpu_state(count), "4294967295 records");
}

TEST_CASE("state codec: decode_vm_kvm_state refuses every malformed input") {
  const Bytes good = petrel::encode(sample_vm());
  const auto recs = split(good);
  REQUIRE(recs.size() == 5);

  require_refused(decode_vm_kvm_state(blob(kVcpuMagic, 1, recs)), "bad magic");
  require_refused(decode_vm_kvm_state(blob(kVmMagic, 7, recs)), "unsupported format version 7");
  Bytes trailing = good;
  trailing.resize(good.size() + 3);
  require_refused(decode_vm_kvm_state(trailing), "3 trailing bytes");

  auto missing = recs;
  missing.pop_back();
  require_refused(decode_vm_kvm_state(blob(kVmMagic, 1, missing)), "record 'clock' is missing");

  auto wrong_chip = recs;
  put_u32(wrong_chip[0].second, 0, KVM_IRQCHIP_IOAPIC);
  require_refused(decode_vm_kvm_state(blob(kVmMagic, 1, wrong_chip)),
                  "pic_master has chip_id 2, expected 0");

  auto long_pit = recs;
  long_pit[3].second.push_back(std::byte{0});
  require_refused(decode_vm_kvm_state(blob(kVmMagic, 1, long_pit)),
                  "pit is " + std::to_string(sizeof(kvm_pit_state2) + 1) + " bytes");

  auto unknown = recs;
  unknown[4].first = 6;
  require_refused(decode_vm_kvm_state(blob(kVmMagic, 1, unknown)), "unknown record tag 6");
}

TEST_CASE("state codec: every truncation and random corruption is refused or decodes cleanly") {
  const Bytes vcpu = petrel::encode(sample_vcpu());
  const Bytes vm = petrel::encode(sample_vm());
  for (size_t len = 0; len < vcpu.size(); ++len) {
    auto r = decode_vcpu_state(std::span(vcpu).first(len));
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.error().code() == ErrorCode::kInvalidArgument);
  }
  for (size_t len = 0; len < vm.size(); ++len) {
    auto r = decode_vm_kvm_state(std::span(vm).first(len));
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.error().code() == ErrorCode::kInvalidArgument);
  }
  // Random byte flips: whatever the outcome, no crash, no other error class (ASan/UBSan
  // builds make this a real memory-safety check).
  std::mt19937 rng(20240607);
  for (int round = 0; round < 2000; ++round) {
    Bytes v = round % 2 == 0 ? vcpu : vm;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      // Bias towards the header and record framing, where lengths and counts live.
      const size_t at = rng() % 2 == 0 ? rng() % std::min<size_t>(v.size(), 64) : rng() % v.size();
      v[at] = static_cast<std::byte>(rng());
    }
    v.resize(v.size() - rng() % 3);
    if (round % 2 == 0) {
      auto r = decode_vcpu_state(v);
      REQUIRE((r.ok() || r.error().code() == ErrorCode::kInvalidArgument));
    } else {
      auto r = decode_vm_kvm_state(v);
      REQUIRE((r.ok() || r.error().code() == ErrorCode::kInvalidArgument));
    }
  }
}
