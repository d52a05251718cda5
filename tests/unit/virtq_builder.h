// VirtqBuilder: a fake driver for tests. It owns guest memory (one anonymous region at
// guest address 0, 1 MiB by default) and lays out a split virtqueue in it (virtio 1.2
// section 2.7): the descriptor table, the available ring with used_event and the used ring
// with avail_event, at spec-aligned addresses; everything after them is a data area from
// which buffers and indirect tables are allocated.
//
// Example (a virtio-rng style request: one device-writable buffer):
//
//   petrel::testing::VirtqBuilder q;                       // queue size 16, 1 MiB RAM
//   auto chain = q.push({VirtqBuilder::writable(64)});     // add + publish in the avail ring
//   auto vq = q.make_queue();                              // a petrel::virtio::Virtqueue
//   auto popped = vq.pop(q.memory());                      // ... the device under test ...
//   CHECK(q.used_idx() == 1);
//   CHECK(q.used(0).id == chain.head);
//   auto bytes = q.read_bytes(chain.buffers[0].addr, 64);
//
// A device test usually hands q.layout() / q.make_queue() to the device's ActivateContext
// and q.memory() as its memory. Buffers: readable(len) / writable(len) get a fresh data
// area; at(addr, len, writable) uses a given address (e.g. outside RAM). push_indirect()
// puts the chain into an indirect table. Raw writers (write_desc, write_indirect_desc,
// set_avail_ring, set_avail_idx, ...) corrupt anything.
//
// Misuse of the builder itself (data area exhausted, bad slot) throws std::logic_error, which
// Catch2 reports as a failed test. Test code only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "virtio/virtio_spec.h"
#include "virtio/virtqueue.h"
#include "vmm/base/guest_memory.h"

namespace petrel::testing {

class VirtqBuilder {
 public:
  // One buffer of a chain to add.
  struct Buffer {
    std::optional<GuestAddress> addr;  // nullopt: allocated from the data area
    uint32_t len = 0;
    bool writable = false;
  };
  static Buffer readable(uint32_t len) { return Buffer{std::nullopt, len, false}; }
  static Buffer writable(uint32_t len) { return Buffer{std::nullopt, len, true}; }
  static Buffer at(GuestAddress addr, uint32_t len, bool writable) {
    return Buffer{addr, len, writable};
  }

  // What add_chain()/push() made: the head index and where every buffer is.
  struct Chain {
    uint16_t head = 0;
    std::vector<virtio::DescriptorSegment> buffers;
  };

  struct UsedElem {
    uint32_t id = 0;
    uint32_t len = 0;
  };
  static_assert(sizeof(UsedElem) == 8);

  // Raw descriptor (2.7.5), all fields as the guest would write them.
  struct RawDesc {
    uint64_t addr = 0;
    uint32_t len = 0;
    uint16_t flags = 0;
    uint16_t next = 0;
  };
  static_assert(sizeof(RawDesc) == 16);

  static constexpr uint64_t kDefaultMemSize = 1 << 20;
  static constexpr GuestAddress kDescTable{0x1000};

  explicit VirtqBuilder(uint16_t size = 16, uint64_t mem_size = kDefaultMemSize)
      : mem_(make_memory(mem_size)), size_(size) {
    layout_.size = size;
    layout_.desc = kDescTable;
    layout_.avail = GuestAddress(align(kDescTable.value() + 16 * uint64_t{size}, 64));
    layout_.used = GuestAddress(align(layout_.avail.value() + 6 + 2 * uint64_t{size}, 4096));
    next_data_ = align(layout_.used.value() + 6 + 8 * uint64_t{size}, 4096);
    if (next_data_ >= mem_size) {
      throw std::logic_error("VirtqBuilder: memory too small for the queue");
    }
  }
  VirtqBuilder(const VirtqBuilder&) = delete;
  VirtqBuilder& operator=(const VirtqBuilder&) = delete;

  const GuestMemory& memory() const { return mem_; }
  virtio::QueueLayout layout() const { return layout_; }
  uint16_t size() const { return size_; }

  // A Virtqueue over this layout (throws if create() fails).
  virtio::Virtqueue make_queue(bool event_idx = false, bool indirect = false) const {
    auto vq = virtio::Virtqueue::create(mem_, layout_, virtio::kMaxQueueSize, event_idx, indirect);
    if (!vq.ok()) {
      throw std::logic_error("VirtqBuilder: " + vq.error().to_string());
    }
    return std::move(vq).value();
  }

  // A fresh 16-byte aligned data area of `len` bytes (zeroed).
  GuestAddress alloc(uint64_t len, uint64_t alignment = 16) {
    uint64_t start = align(next_data_, alignment);
    if (len > mem_size() - start) {
      throw std::logic_error("VirtqBuilder: data area exhausted");
    }
    next_data_ = start + len;
    std::vector<std::byte> zeros(len);
    check(mem_.write(GuestAddress(start), zeros));
    return GuestAddress(start);
  }

  // Writes the chain into consecutive descriptors starting at the next free index
  // (wrapping at the queue size), linked with NEXT. Does not publish it.
  Chain add_chain(std::initializer_list<Buffer> buffers) {
    return add_chain(std::span<const Buffer>(buffers.begin(), buffers.size()));
  }
  Chain add_chain(std::span<const Buffer> buffers) {
    Chain chain;
    chain.head = next_desc_;
    for (size_t i = 0; i < buffers.size(); ++i) {
      uint16_t index = next_desc_;
      next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
      auto seg = place(buffers[i]);
      bool last = i + 1 == buffers.size();
      write_desc(index, RawDesc{seg.addr.value(), seg.len, flags_of(buffers[i], last),
                                static_cast<uint16_t>(last ? 0 : next_desc_)});
      chain.buffers.push_back(seg);
    }
    return chain;
  }

  // One direct descriptor with INDIRECT pointing to a fresh table holding the buffers.
  Chain add_indirect_chain(std::initializer_list<Buffer> buffers) {
    std::span<const Buffer> bufs(buffers.begin(), buffers.size());
    Chain chain;
    chain.head = next_desc_;
    next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
    GuestAddress table = alloc(16 * std::max<size_t>(bufs.size(), 1));
    for (size_t i = 0; i < bufs.size(); ++i) {
      auto seg = place(bufs[i]);
      bool last = i + 1 == bufs.size();
      write_indirect_desc(table, static_cast<uint16_t>(i),
                          RawDesc{seg.addr.value(), seg.len, flags_of(bufs[i], last),
                                  static_cast<uint16_t>(last ? 0 : i + 1)});
      chain.buffers.push_back(seg);
    }
    write_desc(chain.head, RawDesc{table.value(), static_cast<uint32_t>(16 * bufs.size()),
                                   virtio::kDescFIndirect, 0});
    return chain;
  }

  // Makes `head` available: avail ring[avail_idx % size] = head, then avail_idx + 1.
  void publish(uint16_t head) {
    set_avail_ring(avail_idx_, head);
    set_avail_idx(static_cast<uint16_t>(avail_idx_ + 1));
  }
  Chain push(std::initializer_list<Buffer> buffers) {
    auto chain = add_chain(buffers);
    publish(chain.head);
    return chain;
  }
  Chain push_indirect(std::initializer_list<Buffer> buffers) {
    auto chain = add_indirect_chain(buffers);
    publish(chain.head);
    return chain;
  }

  // ---- raw access (for corrupting the queue) ----
  void write_desc(uint16_t index, const RawDesc& d) {
    write_raw_desc(layout_.desc + 16 * uint64_t{index}, d);
  }
  void write_indirect_desc(GuestAddress table, uint16_t index, const RawDesc& d) {
    write_raw_desc(table + 16 * uint64_t{index}, d);
  }
  RawDesc read_desc(uint16_t index) const {
    return get<RawDesc>(layout_.desc + 16 * uint64_t{index});
  }
  // Writes avail ring slot (idx % size) without touching avail idx.
  void set_avail_ring(uint16_t idx, uint16_t head) {
    put<uint16_t>(layout_.avail + 4 + 2 * uint64_t{static_cast<uint16_t>(idx % size_)}, head);
  }
  void set_avail_idx(uint16_t idx) {
    avail_idx_ = idx;
    put<uint16_t>(layout_.avail + 2, idx);
  }
  uint16_t avail_idx() const { return avail_idx_; }
  void set_avail_flags(uint16_t flags) { put<uint16_t>(layout_.avail, flags); }
  void set_used_event(uint16_t idx) { put<uint16_t>(layout_.avail + 4 + 2 * uint64_t{size_}, idx); }
  // The next descriptor index add_chain() will use.
  void set_next_desc(uint16_t index) { next_desc_ = static_cast<uint16_t>(index % size_); }

  // ---- what the device did ----
  uint16_t used_idx() const { return get<uint16_t>(layout_.used + 2); }
  uint16_t used_flags() const { return get<uint16_t>(layout_.used); }
  UsedElem used(uint16_t idx) const {
    return get<UsedElem>(layout_.used + 4 + 8 * uint64_t{static_cast<uint16_t>(idx % size_)});
  }
  uint16_t avail_event() const { return get<uint16_t>(layout_.used + 4 + 8 * uint64_t{size_}); }

  std::vector<std::byte> read_bytes(GuestAddress addr, uint64_t len) const {
    std::vector<std::byte> out(len);
    check(mem_.read(addr, out));
    return out;
  }
  std::string read_string(GuestAddress addr, uint64_t len) const {
    auto bytes = read_bytes(addr, len);
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  void write_bytes(GuestAddress addr, std::span<const std::byte> data) {
    check(mem_.write(addr, data));
  }
  void write_string(GuestAddress addr, std::string_view s) {
    write_bytes(addr, std::as_bytes(std::span(s.data(), s.size())));
  }
  template <typename T>
  T get(GuestAddress addr) const {
    auto v = mem_.read_obj<T>(addr);
    check(v);
    return *v;
  }
  template <typename T>
  void put(GuestAddress addr, const T& value) {
    check(mem_.write_obj(addr, value));
  }

 private:
  static GuestMemory make_memory(uint64_t size) {
    GuestRegionSpec spec{GuestAddress(0), size};
    auto mem = GuestMemory::create_anonymous(std::span(&spec, 1));
    if (!mem.ok()) {
      throw std::logic_error("VirtqBuilder: " + mem.error().to_string());
    }
    return std::move(mem).value();
  }
  static uint64_t align(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
  template <typename R>
  static void check(const R& r) {
    if (!r.ok()) {
      throw std::logic_error("VirtqBuilder: " + r.error().to_string());
    }
  }
  static uint16_t flags_of(const Buffer& b, bool last) {
    uint16_t flags = b.writable ? virtio::kDescFWrite : 0;
    return last ? flags : static_cast<uint16_t>(flags | virtio::kDescFNext);
  }
  uint64_t mem_size() const { return mem_.total_size(); }
  virtio::DescriptorSegment place(const Buffer& b) {
    GuestAddress addr = b.addr ? *b.addr : alloc(b.len);
    return virtio::DescriptorSegment{addr, b.len, b.writable};
  }
  void write_raw_desc(GuestAddress at, const RawDesc& d) { put(at, d); }

  GuestMemory mem_;
  uint16_t size_;
  virtio::QueueLayout layout_;
  uint64_t next_data_ = 0;
  uint16_t next_desc_ = 0;
  uint16_t avail_idx_ = 0;
};

}  // namespace petrel::testing
