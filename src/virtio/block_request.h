// Parsing and validation of one virtio-blk request (virtio 1.2 section 5.2.6) from a
// descriptor chain into a typed request. Everything here is guest-controlled: the header,
// the chain's framing, sectors, lengths, discard/write-zeroes segments. A request that
// breaks a rule is not an error of the VMM: the result carries the status byte to write
// (IOERR or UNSUPP) and the device answers the guest with it.
//
// Framing (2.6.4: any descriptor layout is allowed): the first 16 device-readable bytes
// are the header; the last device-writable byte is the status. IN and GET_ID data are the
// device-writable bytes before the status; OUT data and the discard/write-zeroes segments
// are the device-readable bytes after the header.
//
// No state, no I/O: callable from any thread; the fuzz target drives it directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "virtio/virtqueue.h"
#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"

namespace petrel::virtio::blk {

// 5.2.3 Feature bits.
inline constexpr unsigned kFSizeMax = 1;
inline constexpr unsigned kFSegMax = 2;
inline constexpr unsigned kFGeometry = 4;
inline constexpr unsigned kFRo = 5;
inline constexpr unsigned kFBlkSize = 6;
inline constexpr unsigned kFFlush = 9;
inline constexpr unsigned kFTopology = 10;
inline constexpr unsigned kFConfigWce = 11;
inline constexpr unsigned kFMq = 12;
inline constexpr unsigned kFDiscard = 13;
inline constexpr unsigned kFWriteZeroes = 14;

// 5.2.6 Request types.
inline constexpr uint32_t kTIn = 0;
inline constexpr uint32_t kTOut = 1;
inline constexpr uint32_t kTFlush = 4;
inline constexpr uint32_t kTGetId = 8;
inline constexpr uint32_t kTGetLifetime = 10;
inline constexpr uint32_t kTDiscard = 11;
inline constexpr uint32_t kTWriteZeroes = 13;
inline constexpr uint32_t kTSecureErase = 14;

// 5.2.6 Status values.
inline constexpr uint8_t kSOk = 0;
inline constexpr uint8_t kSIoErr = 1;
inline constexpr uint8_t kSUnsupp = 2;

inline constexpr uint64_t kSectorSize = 512;  // 5.2.6: sectors are always 512 bytes
inline constexpr uint64_t kIdBytes = 20;      // 5.2.6: GET_ID answer length
inline constexpr uint32_t kDiscardFlagUnmap = 1;

// 5.2.6 struct virtio_blk_req, header part (little-endian; x86 only).
struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// 5.2.6 struct virtio_blk_discard_write_zeroes.
struct DiscardSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(DiscardSegment) == 16);

// What the device accepts; the negotiated features decide the booleans.
struct Limits {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  bool discard = false;       // VIRTIO_BLK_F_DISCARD negotiated
  bool write_zeroes = false;  // VIRTIO_BLK_F_WRITE_ZEROES negotiated
  uint32_t seg_max = 0;       // data segments per IN/OUT request
  uint64_t max_data_bytes = 0;
  uint32_t max_discard_sectors = 0;
  uint32_t max_discard_seg = 1;
  uint32_t max_write_zeroes_sectors = 0;
  uint32_t max_write_zeroes_seg = 1;
};

enum class RequestType { kIn, kOut, kFlush, kGetId, kDiscard, kWriteZeroes };

struct Request {
  RequestType type = RequestType::kFlush;
  // IN/OUT: the first sector; DISCARD/WRITE_ZEROES: the start of the range.
  uint64_t sector = 0;
  // IN/OUT: data bytes / 512; DISCARD/WRITE_ZEROES: the range length.
  uint64_t num_sectors = 0;
  bool unmap = false;  // WRITE_ZEROES
  // IN, GET_ID: device-writable ranges (the status byte excluded); OUT: device-readable
  // ranges after the header. Inside guest RAM (the virtqueue checked), not yet mapped.
  std::vector<DescriptorSegment> data;
  uint64_t data_bytes = 0;
};

struct ParsedRequest {
  // The status byte (the chain's last device-writable byte); nullopt when the chain has no
  // device-writable byte at all: then nothing can be reported and used len is 0.
  std::optional<GuestAddress> status;
  uint8_t error = kSOk;     // != kSOk: rejected, answer with this status
  std::string_view reason;  // why it was rejected (static text, for debug logs)
  Request request;          // meaningful when error == kSOk
};

ParsedRequest parse_request(const GuestMemory& mem, const DescriptorChain& chain,
                            const Limits& limits);

}  // namespace petrel::virtio::blk
