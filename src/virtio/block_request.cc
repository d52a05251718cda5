#include "virtio/block_request.h"

#include <algorithm>
#include <bit>

namespace petrel::virtio::blk {
namespace {

static_assert(std::endian::native == std::endian::little,
              "virtio structures are little-endian; this parser reads them natively");

ParsedRequest reject(ParsedRequest parsed, uint8_t status, std::string_view reason) {
  parsed.error = status;
  parsed.reason = reason;
  return parsed;
}

// The device-writable ranges before the status byte.
std::vector<DescriptorSegment> writable_data(const DescriptorChain& chain, uint64_t len) {
  std::vector<DescriptorSegment> out;
  for (const auto& seg : chain.writable()) {
    if (len == 0) {
      break;
    }
    uint64_t n = std::min<uint64_t>(seg.len, len);
    if (n > 0) {
      out.push_back(DescriptorSegment{seg.addr, static_cast<uint32_t>(n), true});
    }
    len -= n;
  }
  return out;
}

bool in_capacity(uint64_t sector, uint64_t num_sectors, uint64_t capacity) {
  return sector <= capacity && num_sectors <= capacity - sector;
}

ParsedRequest parse_transfer(ParsedRequest parsed, const Limits& limits) {
  const Request& req = parsed.request;
  if (req.data_bytes == 0) {
    return reject(std::move(parsed), kSIoErr, "read/write without data");
  }
  if (req.data_bytes % kSectorSize != 0) {
    return reject(std::move(parsed), kSIoErr, "data length not a multiple of 512");
  }
  if (req.data_bytes > limits.max_data_bytes) {
    return reject(std::move(parsed), kSIoErr, "data longer than the device accepts");
  }
  if (req.data.size() > limits.seg_max) {
    return reject(std::move(parsed), kSIoErr, "more data segments than seg_max");
  }
  parsed.request.num_sectors = req.data_bytes / kSectorSize;
  if (!in_capacity(req.sector, parsed.request.num_sectors, limits.capacity_sectors)) {
    return reject(std::move(parsed), kSIoErr, "sectors beyond the capacity");
  }
  return parsed;
}

ParsedRequest parse_ranges(ParsedRequest parsed, ChainReader& reader, const Limits& limits,
                           bool discard) {
  if (discard ? !limits.discard : !limits.write_zeroes) {
    return reject(std::move(parsed), kSUnsupp, "discard/write-zeroes not negotiated");
  }
  if (limits.read_only) {
    return reject(std::move(parsed), kSIoErr, "discard/write-zeroes on a read-only disk");
  }
  uint64_t bytes = reader.remaining();
  uint32_t max_seg = discard ? limits.max_discard_seg : limits.max_write_zeroes_seg;
  if (bytes == 0 || bytes % sizeof(DiscardSegment) != 0) {
    return reject(std::move(parsed), kSIoErr, "discard/write-zeroes segments malformed");
  }
  if (bytes / sizeof(DiscardSegment) > max_seg) {
    return reject(std::move(parsed), kSIoErr, "more discard/write-zeroes segments than max");
  }
  auto seg = reader.read_obj<DiscardSegment>();
  if (!seg.ok()) {
    return reject(std::move(parsed), kSIoErr, "discard/write-zeroes segment unreadable");
  }
  // 5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP.
  uint32_t allowed = discard ? 0 : kDiscardFlagUnmap;
  if ((seg->flags & ~allowed) != 0) {
    return reject(std::move(parsed), kSUnsupp, "discard/write-zeroes flags not supported");
  }
  uint32_t max_sectors = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
  if (seg->num_sectors == 0 || seg->num_sectors > max_sectors) {
    return reject(std::move(parsed), kSIoErr, "discard/write-zeroes length out of bounds");
  }
  if (!in_capacity(seg->sector, seg->num_sectors, limits.capacity_sectors)) {
    return reject(std::move(parsed), kSIoErr, "discard/write-zeroes beyond the capacity");
  }
  parsed.request.sector = seg->sector;
  parsed.request.num_sectors = seg->num_sectors;
  parsed.request.unmap = (seg->flags & kDiscardFlagUnmap) != 0;
  return parsed;
}

}  // namespace

ParsedRequest parse_request(const GuestMemory& mem, const DescriptorChain& chain,
                            const Limits& limits) {
  ParsedRequest parsed;
  auto writable = chain.writable();
  for (auto it = writable.rbegin(); it != writable.rend(); ++it) {
    if (it->len > 0) {
      parsed.status = it->addr + (it->len - 1);
      break;
    }
  }
  if (!parsed.status) {
    return reject(std::move(parsed), kSIoErr, "no device-writable status byte");
  }
  uint64_t writable_data_bytes = chain.writable_bytes() - 1;

  ChainReader reader(mem, chain);
  auto header = reader.read_obj<RequestHeader>();
  if (!header.ok()) {
    return reject(std::move(parsed), kSIoErr, "request header shorter than 16 bytes");
  }
  Request& req = parsed.request;
  req.sector = header->sector;
  switch (header->type) {
    case kTIn:
      req.type = RequestType::kIn;
      if (reader.remaining() != 0) {
        return reject(std::move(parsed), kSIoErr, "read with device-readable data");
      }
      req.data = writable_data(chain, writable_data_bytes);
      req.data_bytes = writable_data_bytes;
      return parse_transfer(std::move(parsed), limits);
    case kTOut:
      req.type = RequestType::kOut;
      if (limits.read_only) {
        return reject(std::move(parsed), kSIoErr, "write to a read-only disk");
      }
      if (writable_data_bytes != 0) {
        return reject(std::move(parsed), kSIoErr, "write with device-writable data");
      }
      req.data_bytes = reader.remaining();
      req.data = reader.take(req.data_bytes);
      std::erase_if(req.data, [](const DescriptorSegment& s) { return s.len == 0; });
      return parse_transfer(std::move(parsed), limits);
    case kTFlush:
      req.type = RequestType::kFlush;
      return parsed;
    case kTGetId:
      req.type = RequestType::kGetId;
      if (writable_data_bytes == 0) {
        return reject(std::move(parsed), kSIoErr, "GET_ID without a buffer");
      }
      req.data_bytes = std::min(writable_data_bytes, kIdBytes);
      req.data = writable_data(chain, req.data_bytes);
      return parsed;
    case kTDiscard:
      req.type = RequestType::kDiscard;
      return parse_ranges(std::move(parsed), reader, limits, true);
    case kTWriteZeroes:
      req.type = RequestType::kWriteZeroes;
      return parse_ranges(std::move(parsed), reader, limits, false);
    default:
      return reject(std::move(parsed), kSUnsupp, "request type not supported");
  }
}

}  // namespace petrel::virtio::blk
