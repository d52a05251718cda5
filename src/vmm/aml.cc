#include "vmm/aml.h"

#include <fmt/format.h>

namespace petrel::aml {

namespace {

// Opcodes (ACPI 6.4 §20.3, "AML Byte Stream Byte Values").
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
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

void append(Bytes& out, std::span<const uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void append_le(Bytes& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out.push_back(static_cast<uint8_t>(value >> (8 * i)));
  }
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

Result<Bytes> resource_template(std::span<const Bytes> descriptors) {
  Bytes data = concat(descriptors);
  data.push_back(small_tag(kEndTagItem, 1));
  data.push_back(0);  // checksum 0: "treated as if the checksum operation succeeded"
  return buffer(data);
}

Bytes concat(std::span<const Bytes> parts) {
  Bytes out;
  for (const auto& part : parts) {
    append(out, part);
  }
  return out;
}

}  // namespace petrel::aml
