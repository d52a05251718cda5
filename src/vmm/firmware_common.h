// What the ACPI tables (acpi_tables.h) and the MP table (mp_table.h) both describe and must
// agree on: the local APIC IDs, the I/O APIC, how the ISA IRQs reach its pins; and the byte
// checksum both specifications use.
//
// The interrupt topology is KVM's in-kernel irqchip as Vm::create makes it (KVM_CREATE_IRQCHIP
// with the default GSI routing, KVM_CREATE_PIT2): a LAPIC per vCPU with APIC ID = vCPU index,
// one 24-pin IOAPIC, and the 8259 pair.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "vmm/base/result.h"

namespace petrel::firmware {

// xAPIC IDs are 8 bits and 0xff is the broadcast ID; the IOAPIC takes the ID after the last
// vCPU's (ioapic_id), so 254 vCPUs use IDs 0..253 and the IOAPIC 254.
inline constexpr uint32_t kMaxVcpus = 254;

// KVM's in-kernel IOAPIC (KVM_IOAPIC_NUM_PINS), GSI base 0.
inline constexpr uint32_t kIoApicPins = 24;
// Version registers of KVM's in-kernel LAPIC (integrated xAPIC, APIC_VERSION 0x14) and
// IOAPIC (IOAPIC_VERSION_ID 0x11).
inline constexpr uint8_t kLocalApicVersion = 0x14;
inline constexpr uint8_t kIoApicVersion = 0x11;

inline constexpr uint8_t kIsaIrqs = 16;
inline constexpr uint8_t kIsaCascadeIrq = 2;  // the slave 8259's cascade: no device raises it

// The IOAPIC pin (= GSI, the GSI base is 0) ISA IRQ `irq` reaches. KVM's default GSI routing
// (virt/kvm/irqchip.c, kvm_setup_default_irq_routing) wires GSI n to PIC pin n and to IOAPIC
// pin n, and the in-kernel PIT raises GSI 0: so ISA IRQ n is on pin n, the PIT on pin 0, and
// the tables carry no interrupt source override. (QEMU installs its own routing that moves
// GSI 0 to IOAPIC pin 2, hence the IRQ0 -> GSI 2 override in its tables; petrel does not.)
constexpr uint8_t isa_irq_pin(uint8_t irq) {
  return irq;
}

// Refuses 0 vCPUs and more than kMaxVcpus.
Result<void> check_vcpu_count(uint32_t vcpus);

// The IOAPIC's ID in both tables: the first ID after the vCPUs' APIC IDs (vcpus must have
// passed check_vcpu_count).
constexpr uint8_t ioapic_id(uint32_t vcpus) {
  return static_cast<uint8_t>(vcpus);
}

// The byte that makes `bytes` (with that byte's own slot holding 0) sum to 0 mod 256, as
// ACPI (ACPI 6.4 §5.2.5.3, §5.2.6) and the MP spec (MP 1.4 §4.1, §4.2) checksums require.
uint8_t checksum_byte(std::span<const uint8_t> bytes);

// A string literal's characters without the NUL, for the fixed-size, unterminated text fields
// of both specifications (signatures, OEM IDs).
template <size_t N>
constexpr std::array<char, N - 1> chars(const char (&text)[N]) {
  std::array<char, N - 1> out{};
  for (size_t i = 0; i + 1 < N; ++i) {
    out[i] = text[i];
  }
  return out;
}

// Appends the bytes of a trivially copyable (packed) structure.
template <typename T>
void append_struct(std::vector<uint8_t>& out, const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

}  // namespace petrel::firmware
