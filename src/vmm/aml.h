// A small encoder of ACPI Machine Language (ACPI 6.4 §20, "ACPI Machine Language (AML)
// Specification") and of the resource descriptors a _CRS buffer holds (§6.4): just what
// petrel's DSDT needs. Each function returns the encoding of one term; terms nest by passing
// the encoded body to the enclosing one (scope, device, buffer).
//
// Names and EISA IDs are checked when the program is compiled (consteval): a bad name is a
// build error, never a malformed table. What can still fail at run time is a package too
// large for a PkgLength (2^28 bytes).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "vmm/base/result.h"

namespace petrel::aml {

using Bytes = std::vector<uint8_t>;

namespace detail {
// Declared, never defined, not constexpr: reaching a call while a consteval constructor runs
// makes the build fail with the call (and its message) in the diagnostic.
void invalid_name_string(const char* why);
void invalid_eisa_id(const char* why);
}  // namespace detail

// A NameString (§20.2.2): an optional root prefix '\', then one or more NameSegs separated by
// '.', e.g. "\\_SB", "COM1", "\\_SB.COM1". Each NameSeg is 1-4 characters, a leading 'A'-'Z'
// or '_' then 'A'-'Z', '0'-'9' or '_'; shorter ones are padded with '_' as in ASL ("_SB" is
// "_SB_").
class NameString {
 public:
  static constexpr size_t kMaxSegs = 8;

  template <size_t N>
  consteval NameString(const char (&text)[N]) {  // NOLINT: implicit from a literal
    if (const char* why = parse(std::string_view(text, N - 1))) {
      detail::invalid_name_string(why);
    }
  }

  // The same syntax checked at run time, for names built from numbers (e.g. "VR0A"). Fails
  // with kInvalidArgument naming the problem.
  static Result<NameString> from_runtime(std::string_view text);

  std::span<const uint8_t> bytes() const { return {bytes_.data(), size_}; }

 private:
  constexpr NameString() = default;

  // Encodes `text` into bytes_; returns nullptr, or why the text is not a NameString.
  constexpr const char* parse(std::string_view text) {
    size_t i = 0;
    const size_t len = text.size();
    if (len > 0 && text[0] == '\\') {
      push(0x5c);  // RootChar
      i = 1;
    }
    uint8_t segs[kMaxSegs][4] = {};
    size_t nsegs = 0;
    while (true) {
      if (nsegs == kMaxSegs) {
        return "too many NameSegs";
      }
      size_t n = 0;
      while (i < len && text[i] != '.') {
        const char c = text[i];
        const bool upper = c >= 'A' && c <= 'Z';
        const bool digit = c >= '0' && c <= '9';
        if (!(upper || c == '_' || (digit && n > 0)) || n == 4) {
          return "bad NameSeg";
        }
        segs[nsegs][n++] = static_cast<uint8_t>(c);
        ++i;
      }
      if (n == 0) {
        return "empty NameSeg";
      }
      for (; n < 4; ++n) {
        segs[nsegs][n] = '_';
      }
      ++nsegs;
      if (i == len) {
        break;
      }
      ++i;  // the '.'
    }
    if (nsegs == 2) {
      push(0x2e);  // DualNamePrefix
    } else if (nsegs > 2) {
      push(0x2f);  // MultiNamePrefix, SegCount
      push(static_cast<uint8_t>(nsegs));
    }
    for (size_t s = 0; s < nsegs; ++s) {
      for (uint8_t c : segs[s]) {
        push(c);
      }
    }
    return nullptr;
  }

  constexpr void push(uint8_t b) { bytes_[size_++] = b; }

  std::array<uint8_t, 3 + kMaxSegs * 4> bytes_{};  // root, MultiNamePrefix, SegCount, segs
  size_t size_ = 0;
};

// A compressed EISA ID, as the ASL EISAID() macro makes it (ACPI 6.4 §19.6, used for _HID,
// §6.1.5): three uppercase letters and four hex digits; "PNP0501" is 0x0105D041.
class EisaId {
 public:
  consteval EisaId(const char (&text)[8]) {  // NOLINT: implicit from a literal
    uint32_t letters = 0;
    for (int i = 0; i < 3; ++i) {
      if (text[i] < 'A' || text[i] > 'Z') {
        detail::invalid_eisa_id("the first three characters must be 'A'-'Z'");
      }
      letters = (letters << 5) | static_cast<uint32_t>(text[i] - 'A' + 1);
    }
    uint32_t product = 0;
    for (int i = 3; i < 7; ++i) {
      const char c = text[i];
      uint32_t nibble = 0;
      if (c >= '0' && c <= '9') {
        nibble = static_cast<uint32_t>(c - '0');
      } else if (c >= 'A' && c <= 'F') {
        nibble = static_cast<uint32_t>(c - 'A' + 10);
      } else {
        detail::invalid_eisa_id("the last four characters must be hex digits 0-9, A-F");
      }
      product = (product << 4) | nibble;
    }
    // The two 16-bit halves are stored big-endian: byte 0 = letters[15:8], byte 1 =
    // letters[7:0], byte 2 = product[15:8], byte 3 = product[7:0]; read as a little-endian
    // DWORD.
    value_ = ((letters >> 8) & 0xff) | ((letters & 0xff) << 8) | (((product >> 8) & 0xff) << 16) |
             ((product & 0xff) << 24);
  }

  constexpr uint32_t value() const { return value_; }

 private:
  uint32_t value_ = 0;
};

// The largest PkgLength value (§20.2.4: 4 bits + 3 more bytes).
inline constexpr size_t kMaxPkgLength = (size_t{1} << 28) - 1;

// The PkgLength (§20.2.4) of a package whose body after the PkgLength is `body_len` bytes:
// its value counts its own 1-4 bytes plus the body. One byte up to 63; otherwise the lead
// byte holds the byte count in bits 7:6 and the low nibble in bits 3:0, the next bytes the
// following bits.
Result<Bytes> pkg_length(size_t body_len);

// An Integer (§20.2.3): ZeroOp, OneOp, or the smallest of BytePrefix, WordPrefix,
// DWordPrefix, QWordPrefix that holds it.
Bytes integer(uint64_t value);

// An EISA ID as an Integer, encoded as ASL compilers encode EISAID(): DWordPrefix + value.
Bytes eisa_id(EisaId id);

// A String (§20.2.3): StringPrefix, the ASCII characters, NUL. Fails (kInvalidArgument) for
// characters outside 0x01-0x7f, which a String cannot hold.
Result<Bytes> string(std::string_view text);

// DefName (§20.2.5.1): NameOp NameString DataRefObject.
Bytes name(const NameString& name, std::span<const uint8_t> object);

// DefScope (§20.2.5.1): ScopeOp PkgLength NameString TermList.
Result<Bytes> scope(const NameString& name, std::span<const uint8_t> terms);

// DefDevice (§20.2.5.2): ExtOpPrefix DeviceOp PkgLength NameString TermList.
Result<Bytes> device(const NameString& name, std::span<const uint8_t> terms);

// DefBuffer (§20.2.5.4): BufferOp PkgLength BufferSize ByteList, the size as an Integer.
Result<Bytes> buffer(std::span<const uint8_t> data);

// Small resource descriptors (§6.4.2).
// I/O Port Descriptor (§6.4.2.5) with 16-bit decode: ASL IO(Decode16, min, max, align, len).
Bytes io_port(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);
// IRQ Descriptor without the information byte (§6.4.2.1): ASL IRQNoFlags(){...}, edge
// triggered, active high, exclusive. Bit n of `irq_mask` selects IRQ n.
Bytes irq_no_flags(uint16_t irq_mask);

// Large resource descriptors (§6.4.3).
// 32-Bit Fixed Memory Range Descriptor (§6.4.3.4): ASL Memory32Fixed(ReadWrite|ReadOnly, base,
// length).
enum class Access : uint8_t { kReadOnly = 0, kReadWrite = 1 };
Bytes memory32_fixed(Access access, uint32_t base, uint32_t length);

// Extended Interrupt Descriptor (§6.4.3.6) with one interrupt number (a GSI on x86) and no
// resource source: ASL Interrupt(ResourceConsumer, trigger, polarity, sharing) {gsi}.
enum class Trigger : uint8_t { kLevel = 0, kEdge = 1 };
enum class Polarity : uint8_t { kActiveHigh = 0, kActiveLow = 1 };
enum class Sharing : uint8_t { kExclusive = 0, kShared = 1 };
Bytes interrupt(uint32_t gsi, Trigger trigger, Polarity polarity, Sharing sharing);

// Address Space Descriptors (§6.4.3.5) of a bridge's windows: ResourceProducer, MinFixed,
// MaxFixed, PosDecode, granularity 0, translation offset 0, length max - min + 1; `min` must
// not exceed `max` (the range is the caller's constant, never guest input). In ASL:
//   WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, len)
//   WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, len)
//   DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
//               0, min, max, 0, len)
Bytes word_bus_number(uint16_t min, uint16_t max);
Bytes word_io(uint16_t min, uint16_t max);
Bytes dword_memory(uint32_t min, uint32_t max);

// ASL ResourceTemplate(): a Buffer of the descriptors followed by an End Tag (§6.4.2.9) whose
// checksum byte is 0 ("treated as if the checksum operation succeeded").
Result<Bytes> resource_template(std::span<const Bytes> descriptors);

// The concatenation of terms (a TermList).
Bytes concat(std::span<const Bytes> parts);

}  // namespace petrel::aml
