// virtio-net TX chain validation and RX buffer layout (src/virtio/net_tx.h, net_rx.h) on
// rings built by VirtqBuilder.
#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "virtio/net_rx.h"
#include "virtio/net_tx.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"

using petrel::ErrorCode;
using petrel::GuestAddress;
using petrel::testing::VirtqBuilder;
using petrel::virtio::DescriptorChain;
using petrel::virtio::DescriptorSegment;
using petrel::virtio::feature_bit;
using namespace petrel::virtio::net;

namespace {

std::vector<std::byte> pattern(size_t len, uint8_t seed) {
  std::vector<std::byte> out(len);
  for (size_t i = 0; i < len; ++i) {
    out[i] = static_cast<std::byte>(seed + i * 7);
  }
  return out;
}

std::vector<std::byte> hdr_bytes(const VirtioNetHdr& hdr) {
  std::vector<std::byte> out(kHdrSize);
  std::memcpy(out.data(), &hdr, kHdrSize);
  return out;
}

// Pushes a TX chain: header bytes and frame bytes, laid out in buffers of the given sizes.
DescriptorChain push_tx(VirtqBuilder& q, petrel::virtio::Virtqueue& vq,
                        std::span<const std::byte> packet, std::initializer_list<uint32_t> sizes) {
  std::vector<VirtqBuilder::Buffer> bufs;
  for (uint32_t s : sizes) {
    bufs.push_back(VirtqBuilder::readable(s));
  }
  auto chain = q.add_chain(bufs);
  size_t off = 0;
  for (const auto& seg : chain.buffers) {
    size_t n = std::min<size_t>(seg.len, packet.size() - off);
    q.write_bytes(seg.addr, packet.subspan(off, n));
    off += n;
  }
  q.publish(chain.head);
  auto popped = vq.pop(q.memory());
  REQUIRE(popped.ok());
  REQUIRE(popped->has_value());
  return std::move(**popped);
}

std::vector<std::byte> packet_of(const VirtioNetHdr& hdr, size_t frame_len) {
  auto out = hdr_bytes(hdr);
  auto frame = pattern(frame_len, 3);
  out.insert(out.end(), frame.begin(), frame.end());
  return out;
}

std::vector<std::byte> gather(const VirtqBuilder& q, std::span<const DescriptorSegment> segs) {
  std::vector<std::byte> out;
  for (const auto& s : segs) {
    auto b = q.read_bytes(s.addr, s.len);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

constexpr uint64_t kCsum = feature_bit(kFCsum);
constexpr uint64_t kTso4 = feature_bit(kFHostTso4);
constexpr uint64_t kTso6 = feature_bit(kFHostTso6);
constexpr uint64_t kEcn = feature_bit(kFHostEcn);

}  // namespace

TEST_CASE("TX chain: header and frame across descriptors", "[net][tx]") {
  VirtqBuilder q(16);
  auto vq = q.make_queue();
  VirtioNetHdr hdr;
  hdr.flags = 0xfe;  // unknown and receive-only flags: ignored (5.1.6.2.2)
  hdr.num_buffers = 9;
  hdr.csum_start = 5;
  hdr.hdr_len = 20;
  auto packet = packet_of(hdr, 100);
  auto chain = push_tx(q, vq, packet, {5, 30, 77});
  auto frame = parse_tx_chain(q.memory(), chain, 0);
  REQUIRE(frame.ok());
  CHECK(frame->frame_len == 100);
  CHECK(frame->hdr.flags == 0);
  CHECK(frame->hdr.num_buffers == 0);
  CHECK(frame->hdr.csum_start == 0);  // unused without NEEDS_CSUM
  CHECK(frame->hdr.hdr_len == 20);
  CHECK(gather(q, frame->frame) == pattern(100, 3));
}

TEST_CASE("TX chain: length bounds", "[net][tx]") {
  VirtqBuilder q(16, 4 << 20);
  auto vq = q.make_queue();
  VirtioNetHdr hdr;
  SECTION("header only") {
    auto packet = hdr_bytes(hdr);
    auto chain = push_tx(q, vq, packet, {kHdrSize});
    CHECK(parse_tx_chain(q.memory(), chain, 0).error().code() == ErrorCode::kGuest);
  }
  SECTION("shorter than an Ethernet header") {
    auto chain = push_tx(q, vq, packet_of(hdr, kMinFrameLen - 1), {kHdrSize + kMinFrameLen - 1});
    CHECK_FALSE(parse_tx_chain(q.memory(), chain, 0).ok());
  }
  SECTION("just an Ethernet header") {
    auto chain = push_tx(q, vq, packet_of(hdr, kMinFrameLen), {kHdrSize + kMinFrameLen});
    CHECK(parse_tx_chain(q.memory(), chain, 0).ok());
  }
  SECTION("the largest frame") {
    auto chain = push_tx(q, vq, packet_of(hdr, kMaxFrameLen), {kHdrSize, 40000, 25550});
    auto frame = parse_tx_chain(q.memory(), chain, 0);
    REQUIRE(frame.ok());
    CHECK(frame->frame_len == kMaxFrameLen);
  }
  SECTION("one byte too long") {
    auto chain = push_tx(q, vq, packet_of(hdr, kMaxFrameLen + 1), {kHdrSize, 40000, 25551});
    CHECK_FALSE(parse_tx_chain(q.memory(), chain, 0).ok());
  }
  SECTION("a huge buffer") {
    auto chain = push_tx(q, vq, packet_of(hdr, 60), {1 << 21});
    CHECK_FALSE(parse_tx_chain(q.memory(), chain, 0).ok());
  }
}

TEST_CASE("TX chain: device-writable buffers are refused", "[net][tx]") {
  VirtqBuilder q(16);
  auto vq = q.make_queue();
  q.push({VirtqBuilder::readable(kHdrSize + 60), VirtqBuilder::writable(16)});
  auto popped = vq.pop(q.memory());
  REQUIRE(popped.ok());
  REQUIRE(popped->has_value());
  auto frame = parse_tx_chain(q.memory(), **popped, 0);
  REQUIRE_FALSE(frame.ok());
  CHECK(frame.error().code() == ErrorCode::kGuest);
}

TEST_CASE("TX header: checksum offload", "[net][tx]") {
  VirtioNetHdr hdr;
  hdr.flags = kHdrFNeedsCsum;
  hdr.csum_start = 34;
  hdr.csum_offset = 16;
  CHECK_FALSE(check_tx_header(hdr, 0, 100).ok());  // F_CSUM not negotiated
  auto ok = check_tx_header(hdr, kCsum, 100);
  REQUIRE(ok.ok());
  CHECK(ok->flags == kHdrFNeedsCsum);
  CHECK(ok->csum_start == 34);
  CHECK(ok->csum_offset == 16);
  CHECK(check_tx_header(hdr, kCsum, 52).ok());        // checksum field ends at the frame's end
  CHECK_FALSE(check_tx_header(hdr, kCsum, 51).ok());  // ... and one byte beyond it
  hdr.csum_start = 0xffff;
  hdr.csum_offset = 0xffff;  // no 16-bit overflow
  CHECK_FALSE(check_tx_header(hdr, kCsum, kMaxFrameLen).ok());
}

TEST_CASE("TX header: segmentation offload only as negotiated", "[net][tx]") {
  VirtioNetHdr hdr;
  hdr.flags = kHdrFNeedsCsum;
  hdr.csum_start = 34;
  hdr.csum_offset = 16;
  hdr.gso_size = 1448;
  hdr.hdr_len = 66;
  hdr.gso_type = kGsoTcpv4;
  CHECK_FALSE(check_tx_header(hdr, kCsum, 60000).ok());
  CHECK(check_tx_header(hdr, kCsum | kTso4, 60000).ok());
  CHECK_FALSE(check_tx_header(hdr, kCsum | kTso6, 60000).ok());
  hdr.gso_type = kGsoTcpv6;
  CHECK(check_tx_header(hdr, kCsum | kTso6, 60000).ok());
  hdr.gso_type = kGsoTcpv6 | kGsoEcn;
  CHECK_FALSE(check_tx_header(hdr, kCsum | kTso6, 60000).ok());
  CHECK(check_tx_header(hdr, kCsum | kTso6 | kEcn, 60000).ok());
  hdr.gso_type = kGsoUdp;  // UFO is never offered
  CHECK_FALSE(check_tx_header(hdr, ~uint64_t{0}, 60000).ok());
  hdr.gso_type = 7;
  CHECK_FALSE(check_tx_header(hdr, ~uint64_t{0}, 60000).ok());
  hdr.gso_type = kGsoNone | kGsoEcn;
  CHECK_FALSE(check_tx_header(hdr, ~uint64_t{0}, 60000).ok());
  hdr.gso_type = kGsoTcpv4;
  hdr.gso_size = 0;
  CHECK_FALSE(check_tx_header(hdr, kCsum | kTso4, 60000).ok());
  hdr.gso_size = 1448;
  hdr.hdr_len = 0xffff;  // not relied upon: clamped to the frame
  auto clamped = check_tx_header(hdr, kCsum | kTso4, 60000);
  REQUIRE(clamped.ok());
  CHECK(clamped->hdr_len == 60000);
}

TEST_CASE("RX layout: chains needed", "[net][rx]") {
  auto chain = [](uint16_t head, std::initializer_list<uint32_t> sizes) {
    std::vector<DescriptorSegment> segs;
    uint64_t addr = 0x10000;
    for (uint32_t s : sizes) {
      segs.push_back(DescriptorSegment{GuestAddress(addr), s, true});
      addr += s;
    }
    return DescriptorChain(head, std::move(segs));
  };
  std::vector<DescriptorChain> chains{chain(0, {100}), chain(1, {50, 50}), chain(2, {300})};
  CHECK(rx_chains_needed({}, 10, true) == 0);
  CHECK(rx_chains_needed(chains, 100, false) == 1);
  CHECK(rx_chains_needed(chains, 101, false) == 0);
  CHECK(rx_chains_needed(chains, 100, true) == 1);
  CHECK(rx_chains_needed(chains, 101, true) == 2);
  CHECK(rx_chains_needed(chains, 200, true) == 2);
  CHECK(rx_chains_needed(chains, 500, true) == 3);
  CHECK(rx_chains_needed(chains, 501, true) == 0);
}

TEST_CASE("RX layout: one chain without mergeable buffers", "[net][rx]") {
  VirtqBuilder q(16);
  auto vq = q.make_queue();
  auto pushed = q.push({VirtqBuilder::writable(8), VirtqBuilder::writable(2000)});
  auto chain = std::move(**vq.pop(q.memory()));
  VirtioNetHdr hdr;
  hdr.flags = kHdrFDataValid;
  auto frame = pattern(1500, 9);
  auto used = write_rx_frame(q.memory(), std::span(&chain, 1), hdr, frame, false);
  REQUIRE(used.ok());
  REQUIRE(used->size() == 1);
  CHECK((*used)[0].head == pushed.head);
  CHECK((*used)[0].len == kHdrSize + 1500);
  auto bytes = gather(q, pushed.buffers);
  VirtioNetHdr got;
  std::memcpy(&got, bytes.data(), kHdrSize);
  CHECK(got.flags == kHdrFDataValid);
  CHECK(got.num_buffers == 1);
  CHECK(std::vector<std::byte>(bytes.begin() + kHdrSize, bytes.begin() + kHdrSize + 1500) == frame);
  // Too big for the chain: refused, nothing needed.
  auto big = pattern(2000, 1);
  CHECK_FALSE(write_rx_frame(q.memory(), std::span(&chain, 1), hdr, big, false).ok());
}

TEST_CASE("RX layout: a frame merged over several chains", "[net][rx]") {
  VirtqBuilder q(16);
  auto vq = q.make_queue();
  std::vector<VirtqBuilder::Chain> pushed;
  std::vector<DescriptorChain> chains;
  for (int i = 0; i < 4; ++i) {
    pushed.push_back(q.push({VirtqBuilder::writable(40)}));
    chains.push_back(std::move(**vq.pop(q.memory())));
  }
  auto frame = pattern(90, 5);  // 102 bytes with the header: 40 + 40 + 22
  auto used = write_rx_frame(q.memory(), chains, VirtioNetHdr{}, frame, true);
  REQUIRE(used.ok());
  REQUIRE(used->size() == 3);
  CHECK((*used)[0].len == 40);
  CHECK((*used)[1].len == 40);
  CHECK((*used)[2].len == 22);
  std::vector<std::byte> bytes;
  for (int i = 0; i < 3; ++i) {
    CHECK((*used)[i].head == pushed[i].head);
    auto b = q.read_bytes(pushed[i].buffers[0].addr, (*used)[i].len);
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  VirtioNetHdr got;
  std::memcpy(&got, bytes.data(), kHdrSize);
  CHECK(got.num_buffers == 3);
  CHECK(std::vector<std::byte>(bytes.begin() + kHdrSize, bytes.end()) == frame);

  // A chain with no room for a header is refused.
  std::vector<DescriptorChain> tiny{
      DescriptorChain(0, {DescriptorSegment{GuestAddress(0x20000), kHdrSize - 1, true},
                          DescriptorSegment{GuestAddress(0x21000), 0, true}}),
      DescriptorChain(1, {DescriptorSegment{GuestAddress(0x22000), 4000, true}})};
  CHECK_FALSE(write_rx_frame(q.memory(), tiny, VirtioNetHdr{}, frame, true).ok());
}

TEST_CASE("RX layout: used entries published with one index update", "[net][rx]") {
  VirtqBuilder q(4);
  auto vq = q.make_queue(true);
  for (int i = 0; i < 3; ++i) {
    q.push({VirtqBuilder::writable(64)});
    REQUIRE(vq.pop(q.memory()).ok());
  }
  // Start near the wrap of the ring slots: slot indices must wrap, the index must not.
  vq.set_indices(vq.next_avail(), 3);
  std::vector<UsedEntry> entries{{0, 10}, {1, 20}, {2, 30}};
  REQUIRE(publish_used(vq, q.memory(), entries).ok());
  CHECK(q.used_idx() == 6);
  CHECK(vq.next_used() == 6);
  CHECK(q.used(3).id == 0);
  CHECK(q.used(3).len == 10);
  CHECK(q.used(4).id == 1);
  CHECK(q.used(5).id == 2);
  CHECK(q.used(5).len == 30);
  REQUIRE(vq.add_used(q.memory(), 1, 5).ok());
  CHECK(q.used_idx() == 7);
  // Bad input from the caller is refused without touching the ring.
  std::vector<UsedEntry> bad{{4, 1}};
  CHECK_FALSE(publish_used(vq, q.memory(), bad).ok());
  std::vector<UsedEntry> too_many(5, UsedEntry{0, 0});
  CHECK_FALSE(publish_used(vq, q.memory(), too_many).ok());
  CHECK(q.used_idx() == 7);
}
