#include "vmm/aml.h"

#include <fmt/format.h>

namespace petrel::aml {

namespace {

// Opcodes (ACPI 6.4 §20.3, "AML Byte Stream Byte Values").
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix

// Small resource item tags (§6.4.2): bit 7 = 0, bits 6:3 the item name, bits 2:0 the length.
constexpr uint8_t small_tag(uint8_t item, uint8_t length) {
  return static_cast<uint8_t>((item << 3) | length);
}
constexpr uint8_t kIrqItem = 0x04;
constexpr uint8_t kIoPortItem = 0x08;
constexpr uint8_t kEndTagItem = 0x0f;

// Large resource items (§6.4.3): byte 0 = 0x80 | item name, then a 16-bit length of the data
// that follows.
constexpr uint8_t kLargeItem = 0x80;
constexpr uint8_t kMemory32FixedItem = 0x06;
constexpr uint8_t kDWordAddressItem = 0x07;
constexpr uint8_t kExtendedIrqItem = 0x09;
constexpr uint8_t kWordAddressItem = 0x08;

// Address space descriptors (§6.4.3.5.2-3): Resource Type, General Flags.
constexpr uint8_t kMemoryRange = 0;
constexpr uint8_t kIoRange = 1;
constexpr uint8_t kBusNumberRange = 2;
constexpr uint8_t kMaxFixed = 1u << 3;
constexpr uint8_t kMinFixed = 1u << 2;        // bit 1 clear: positive decode; bit 0 clear: producer
constexpr uint8_t kIoEntireRange = 0x03;      // type-specific flags, _RNG
constexpr uint8_t kMemNonCacheableRw = 0x01;  // type-specific flags, _MEM = 0, _RW = 1

void append(Bytes& out, std::span<const uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void append_le(Bytes& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out.push_back(static_cast<uint8_t>(value >> (8 * i)));
  }
}

// A large descriptor's header: its tag and the length of `data_len` bytes after the header.
Bytes large_header(uint8_t item, uint16_t data_len) {
  Bytes out{static_cast<uint8_t>(kLargeItem | item)};
  append_le(out, data_len, 2);
  return out;
}

// An address space descriptor with the given width (2 or 4 bytes) of its five numbers.
Bytes address_space(uint8_t item, int width, uint8_t resource_type, uint8_t type_flags,
                    uint64_t min, uint64_t max) {
  Bytes out = large_header(item, static_cast<uint16_t>(3 + 5 * width));
  out.push_back(resource_type);
  out.push_back(kMinFixed | kMaxFixed);
  out.push_back(type_flags);
  append_le(out, 0, width);  // granularity
  append_le(out, min, width);
  append_le(out, max, width);
  append_le(out, 0, width);  // translation offset
  append_le(out, max - min + 1, width);
  return out;
}

// opcode(s) PkgLength rest...: the PkgLength covers everything after the opcode.
Result<Bytes> package(std::span<const uint8_t> opcode, std::span<const uint8_t> first,
                      std::span<const uint8_t> second) {
  PETREL_TRY_ASSIGN(Bytes length, pkg_length(first.size() + second.size()));
  Bytes out(opcode.begin(), opcode.end());
  append(out, length);
  append(out, first);
  append(out, second);
  return out;
}

}  // namespace

Result<Bytes> pkg_length(size_t body_len) {
  // The value includes the PkgLength bytes themselves: pick the smallest encoding that holds
  // body_len plus its own size (6 bits in one byte; 4 + 8k bits in 1 + k bytes).
  for (size_t k = 0; k <= 3; ++k) {
    const size_t value = body_len + 1 + k;
    const size_t limit = k == 0 ? 0x3f : (size_t{1} << (4 + 8 * k)) - 1;
    if (body_len > kMaxPkgLength || value > limit) {
      continue;
    }
    if (k == 0) {
      return Bytes{static_cast<uint8_t>(value)};
    }
    Bytes out{static_cast<uint8_t>((k << 6) | (value & 0x0f))};
    append_le(out, value >> 4, static_cast<int>(k));
    return out;
  }
  return Error(ErrorCode::kOutOfRange,
               fmt::format("AML package of {} bytes exceeds the PkgLength limit of {}", body_len,
                           kMaxPkgLength));
}

Bytes integer(uint64_t value) {
  if (value == 0) {
    return {kZeroOp};
  }
  if (value == 1) {
    return {kOneOp};
  }
  Bytes out;
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le(out, value, 1);
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le(out, value, 2);
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    append_le(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    append_le(out, value, 8);
  }
  return out;
}

Bytes eisa_id(EisaId id) {
  Bytes out{kDWordPrefix};
  append_le(out, id.value(), 4);
  return out;
}

Result<Bytes> string(std::string_view text) {
  Bytes out{kStringPrefix};
  for (char c : text) {
    const auto byte = static_cast<uint8_t>(c);
    if (byte == 0 || byte > 0x7f) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("AML String: byte {:#04x} is not ASCII 0x01-0x7f", byte));
    }
    out.push_back(byte);
  }
  out.push_back(0);
  return out;
}

Bytes name(const NameString& name, std::span<const uint8_t> object) {
  Bytes out{kNameOp};
  append(out, name.bytes());
  append(out, object);
  return out;
}

Result<Bytes> scope(const NameString& name, std::span<const uint8_t> terms) {
  const uint8_t op[] = {kScopeOp};
  return package(op, name.bytes(), terms);
}

Result<Bytes> device(const NameString& name, std::span<const uint8_t> terms) {
  const uint8_t op[] = {kExtOpPrefix, kDeviceOp};
  return package(op, name.bytes(), terms);
}

Result<Bytes> buffer(std::span<const uint8_t> data) {
  const uint8_t op[] = {kBufferOp};
  return package(op, integer(data.size()), data);
}

Bytes io_port(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
  constexpr uint8_t kDecode16 = 0x01;  // information byte bit 0: 16-bit address decode
  Bytes out{small_tag(kIoPortItem, 7), kDecode16};
  append_le(out, min, 2);
  append_le(out, max, 2);
  out.push_back(alignment);
  out.push_back(length);
  return out;
}

Bytes irq_no_flags(uint16_t irq_mask) {
  Bytes out{small_tag(kIrqItem, 2)};
  append_le(out, irq_mask, 2);
  return out;
}

Bytes memory32_fixed(Access access, uint32_t base, uint32_t length) {
  Bytes out = large_header(kMemory32FixedItem, 9);
  out.push_back(static_cast<uint8_t>(access));
  append_le(out, base, 4);
  append_le(out, length, 4);
  return out;
}

Bytes interrupt(uint32_t gsi, Trigger trigger, Polarity polarity, Sharing sharing) {
  constexpr uint8_t kConsumer = 1u << 0;
  Bytes out = large_header(kExtendedIrqItem, 6);
  out.push_back(static_cast<uint8_t>(kConsumer | (static_cast<uint8_t>(trigger) << 1) |
                                     (static_cast<uint8_t>(polarity) << 2) |
                                     (static_cast<uint8_t>(sharing) << 3)));
  out.push_back(1);  // interrupt table length
  append_le(out, gsi, 4);
  return out;
}

Bytes word_bus_number(uint16_t min, uint16_t max) {
  return address_space(kWordAddressItem, 2, kBusNumberRange, 0, min, max);
}

Bytes word_io(uint16_t min, uint16_t max) {
  return address_space(kWordAddressItem, 2, kIoRange, kIoEntireRange, min, max);
}

Bytes dword_memory(uint32_t min, uint32_t max) {
  return address_space(kDWordAddressItem, 4, kMemoryRange, kMemNonCacheableRw, min, max);
}

Result<Bytes> resource_template(std::span<const Bytes> descriptors) {
  Bytes data = concat(descriptors);
  data.push_back(small_tag(kEndTagItem, 1));
  data.push_back(0);  // checksum 0: "treated as if the checksum operation succeeded"
  return buffer(data);
}

Result<NameString> NameString::from_runtime(std::string_view text) {
  NameString out;
  if (const char* why = out.parse(text)) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("AML name \"{}\": {}", text, why));
  }
  return out;
}

Bytes concat(std::span<const Bytes> parts) {
  Bytes out;
  for (const auto& part : parts) {
    append(out, part);
  }
  return out;
}

}  // namespace petrel::aml
