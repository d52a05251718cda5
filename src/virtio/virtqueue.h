// Split virtqueue (virtio 1.2 section 2.7), device side.
//
// Everything read from the rings and descriptor tables is guest-controlled and checked here:
// descriptor indices, addresses and lengths (must lie in guest RAM), the NEXT chain (its
// length is capped at the queue size, so a guest-made loop ends the walk), indirect tables
// (2.7.5.3: no nesting, no NEXT+INDIRECT, length a multiple of 16, non-empty), and the
// order rule that device-writable descriptors follow the readable ones (2.7.4.2). A broken
// ring is an error from pop(); the device then reports DEVICE_NEEDS_RESET and stops using
// the queue. Writes into guest memory (buffers and the used ring) go through GuestMemory,
// which records them in the dirty log.
//
// Thread affinity: a Virtqueue belongs to the device it was handed to and is used on the
// VMM event-loop thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel::virtio {

// Where the driver put a queue (from the transport's registers), before any check.
struct QueueLayout {
  uint16_t size = 0;   // entries, chosen by the driver (<= the device's maximum)
  GuestAddress desc;   // descriptor table, 16-byte aligned
  GuestAddress avail;  // driver area, 2-byte aligned
  GuestAddress used;   // device area, 4-byte aligned
};

// One buffer of a chain, already checked to lie inside guest RAM.
struct DescriptorSegment {
  GuestAddress addr;
  uint32_t len = 0;
  bool device_writable = false;
};

// A validated chain from the available ring: its device-readable segments first, then its
// device-writable ones.
class DescriptorChain {
 public:
  DescriptorChain(uint16_t head, std::vector<DescriptorSegment> segments);

  uint16_t head() const { return head_; }
  std::span<const DescriptorSegment> segments() const { return segments_; }
  std::span<const DescriptorSegment> readable() const;
  std::span<const DescriptorSegment> writable() const;
  uint64_t readable_bytes() const;
  uint64_t writable_bytes() const;

 private:
  uint16_t head_;
  std::vector<DescriptorSegment> segments_;
  size_t first_writable_;
};

// Sequential copy out of a chain's device-readable segments.
class ChainReader {
 public:
  ChainReader(const GuestMemory& mem, const DescriptorChain& chain);
  uint64_t remaining() const;
  // Fails (and consumes nothing) when fewer than out.size() bytes remain.
  Result<void> read(std::span<std::byte> out);
  Result<void> skip(uint64_t len);
  template <typename T>
  Result<T> read_obj() {
    T value;
    PETREL_TRY(read(std::as_writable_bytes(std::span(&value, 1))));
    return value;
  }
  // The remaining readable bytes as guest ranges (for zero-copy I/O); consumes up to `len`.
  std::vector<DescriptorSegment> take(uint64_t len);

 private:
  const GuestMemory& mem_;
  std::span<const DescriptorSegment> segs_;
  size_t index_ = 0;
  uint64_t offset_ = 0;  // into segs_[index_]
};

// Sequential copy into a chain's device-writable segments; counts the bytes written (the
// used-ring length).
class ChainWriter {
 public:
  ChainWriter(const GuestMemory& mem, const DescriptorChain& chain);
  uint64_t remaining() const;
  uint64_t written() const { return written_; }
  // Fails (and writes nothing) when fewer than data.size() bytes of room remain.
  Result<void> write(std::span<const std::byte> data);
  template <typename T>
  Result<void> write_obj(const T& value) {
    return write(std::as_bytes(std::span(&value, 1)));
  }
  // The remaining writable room as guest ranges (for zero-copy I/O: the caller fills them
  // and reports the count with advance()); consumes nothing.
  std::vector<DescriptorSegment> peek(uint64_t len) const;
  // Records `len` bytes as written through peek()'s ranges (marks them dirty).
  Result<void> advance(uint64_t len);

 private:
  const GuestMemory& mem_;
  std::span<const DescriptorSegment> segs_;
  size_t index_ = 0;
  uint64_t offset_ = 0;
  uint64_t written_ = 0;
};

class Virtqueue {
 public:
  // Checks the layout (size a power of two in [1, max_size], alignments, every ring inside
  // guest RAM). `event_idx`: VIRTIO_F_EVENT_IDX was negotiated. `indirect`:
  // VIRTIO_F_INDIRECT_DESC was negotiated (else an INDIRECT descriptor is an error).
  static Result<Virtqueue> create(const GuestMemory& mem, const QueueLayout& layout,
                                  uint16_t max_size, bool event_idx, bool indirect);

  uint16_t size() const { return layout_.size; }
  const QueueLayout& layout() const { return layout_; }

  // The next available chain, or nullopt when the driver has made none available. An
  // error means the driver broke the ring; the queue must not be used again until reset.
  Result<std::optional<DescriptorChain>> pop(const GuestMemory& mem);
  // Puts a chain back so that the next pop() returns it again (e.g. no room in a backend).
  void undo_pop();
  // Publishes `head` in the used ring with `len` bytes written (2.7.8), with a release
  // barrier so the driver sees buffer contents before the index.
  Result<void> add_used(const GuestMemory& mem, uint16_t head, uint32_t len);
  // Publishes several chains with one used-index update, so the driver sees all of them at
  // once (a frame spread over several chains with VIRTIO_NET_F_MRG_RXBUF, 5.1.6.4).
  struct UsedElement {
    uint16_t head = 0;
    uint32_t len = 0;  // bytes the device wrote into the chain
  };
  Result<void> add_used_batch(const GuestMemory& mem, std::span<const UsedElement> elements);
  // After one or more add_used: whether the driver wants an interrupt now (2.7.7.2:
  // used_event with EVENT_IDX, else the avail ring's NO_INTERRUPT flag).
  Result<bool> should_notify(const GuestMemory& mem);
  // With EVENT_IDX: publishes avail_event = the next index the device will read, so the
  // driver kicks for anything after it. Call before checking the ring one last time.
  Result<void> update_avail_event(const GuestMemory& mem);

  // For snapshots and migration.
  uint16_t next_avail() const { return next_avail_; }
  uint16_t next_used() const { return next_used_; }
  void set_indices(uint16_t next_avail, uint16_t next_used);

 private:
  Virtqueue(QueueLayout layout, bool event_idx, bool indirect);

  QueueLayout layout_;
  bool event_idx_;
  bool indirect_;
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;  // next_used_ when the driver was last notified
  bool signalled_used_valid_ = false;
};

}  // namespace petrel::virtio
