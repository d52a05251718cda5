#include "virtio/net_tx.h"

#include <fmt/format.h>

#include "virtio/virtio_spec.h"

namespace petrel::virtio::net {

namespace {

Error tx_error(std::string message) {
  return Error(ErrorCode::kGuest, std::move(message));
}

bool has(uint64_t features, unsigned bit) {
  return (features & feature_bit(bit)) != 0;
}

}  // namespace

Result<VirtioNetHdr> check_tx_header(const VirtioNetHdr& hdr, uint64_t features,
                                     uint32_t frame_len) {
  VirtioNetHdr out = hdr;
  out.flags = hdr.flags & kHdrFNeedsCsum;
  out.num_buffers = 0;
  if ((out.flags & kHdrFNeedsCsum) != 0) {
    if (!has(features, kFCsum)) {
      return tx_error("NEEDS_CSUM set but VIRTIO_NET_F_CSUM was not negotiated");
    }
    const uint32_t csum_end = uint32_t{hdr.csum_start} + hdr.csum_offset + 2;
    if (csum_end > frame_len) {
      return tx_error(fmt::format("checksum at {}+{} lies beyond the {}-byte frame", hdr.csum_start,
                                  hdr.csum_offset, frame_len));
    }
  } else {
    out.csum_start = 0;
    out.csum_offset = 0;
  }
  const uint8_t gso = hdr.gso_type & static_cast<uint8_t>(~kGsoEcn);
  const bool ecn = (hdr.gso_type & kGsoEcn) != 0;
  switch (gso) {
    case kGsoNone:
      if (ecn) {
        return tx_error("GSO ECN bit set on a non-GSO frame");
      }
      out.gso_size = 0;
      break;
    case kGsoTcpv4:
      if (!has(features, kFHostTso4)) {
        return tx_error("TSO4 frame but VIRTIO_NET_F_HOST_TSO4 was not negotiated");
      }
      break;
    case kGsoTcpv6:
      if (!has(features, kFHostTso6)) {
        return tx_error("TSO6 frame but VIRTIO_NET_F_HOST_TSO6 was not negotiated");
      }
      break;
    default:
      return tx_error(fmt::format("GSO type {:#x} is not offered", hdr.gso_type));
  }
  if (gso != kGsoNone) {
    if (ecn && !has(features, kFHostEcn)) {
      return tx_error("GSO ECN bit set but VIRTIO_NET_F_HOST_ECN was not negotiated");
    }
    if (hdr.gso_size == 0) {
      return tx_error("GSO frame with gso_size 0");
    }
  }
  if (out.hdr_len > frame_len) {
    out.hdr_len = static_cast<uint16_t>(frame_len);
  }
  return out;
}

Result<TxFrame> parse_tx_chain(const GuestMemory& mem, const DescriptorChain& chain,
                               uint64_t features) {
  if (!chain.writable().empty()) {
    return tx_error("transmit chain has device-writable buffers");
  }
  const uint64_t total = chain.readable_bytes();
  if (total < kHdrSize + kMinFrameLen) {
    return tx_error(
        fmt::format("transmit chain of {} bytes is shorter than a header ({}) and "
                    "an Ethernet header ({})",
                    total, kHdrSize, kMinFrameLen));
  }
  if (total > kHdrSize + kMaxFrameLen) {
    return tx_error(
        fmt::format("transmit chain of {} bytes exceeds {}", total, kHdrSize + kMaxFrameLen));
  }
  TxFrame out;
  out.frame_len = static_cast<uint32_t>(total - kHdrSize);
  ChainReader reader(mem, chain);
  PETREL_TRY_ASSIGN(auto hdr, reader.read_obj<VirtioNetHdr>());
  PETREL_TRY_ASSIGN(out.hdr, check_tx_header(hdr, features, out.frame_len));
  out.frame = reader.take(out.frame_len);
  return out;
}

}  // namespace petrel::virtio::net
