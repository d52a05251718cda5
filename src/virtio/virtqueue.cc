#include "virtio/virtqueue.h"

#include <algorithm>
#include <atomic>
#include <bit>

#include <fmt/format.h>

#include "virtio/virtio_spec.h"

namespace petrel::virtio {

namespace {

// 2.7.5 The Virtqueue Descriptor Table. All fields are guest-controlled (little-endian; x86
// hosts only).
struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);

// 2.7.8 The Virtqueue Used Ring: one element.
struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);

constexpr uint16_t kKnownDescFlags = kDescFNext | kDescFWrite | kDescFIndirect;

// Byte offsets inside the rings (2.7.6, 2.7.8).
constexpr uint64_t kAvailFlags = 0;
constexpr uint64_t kAvailIdx = 2;
constexpr uint64_t kAvailRing = 4;
constexpr uint64_t kUsedIdx = 2;
constexpr uint64_t kUsedRing = 4;

// Spec 2.7 table "Virtqueue Part Sizes", including the event fields.
uint64_t desc_table_bytes(uint16_t size) {
  return 16 * uint64_t{size};
}
uint64_t avail_ring_bytes(uint16_t size) {
  return 6 + 2 * uint64_t{size};
}
uint64_t used_ring_bytes(uint16_t size) {
  return 6 + 8 * uint64_t{size};
}

Error ring_error(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

// 2.7.10: the driver wants a notification when new_idx has moved past event_idx since old.
// Wrapping uint16 arithmetic, as in the spec's vring_need_event().
bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

// Walks one descriptor chain; keeps the checks of 2.7.4.2 / 2.7.5.3.1 in one place.
class ChainWalker {
 public:
  ChainWalker(const GuestMemory& mem, uint16_t queue_size, bool indirect)
      : mem_(mem), queue_size_(queue_size), indirect_(indirect) {}

  Result<std::vector<DescriptorSegment>> walk(GuestAddress desc_table, uint16_t head) {
    uint16_t index = head;
    for (;;) {
      if (index >= queue_size_) {
        return Error(ErrorCode::kOutOfRange,
                     fmt::format("descriptor index {} >= queue size {}", index, queue_size_));
      }
      PETREL_TRY_ASSIGN(auto desc, mem_.read_obj<VirtqDesc>(desc_table + 16 * uint64_t{index}));
      if ((desc.flags & kDescFIndirect) != 0) {
        PETREL_TRY(walk_indirect(desc));
        return std::move(segments_);
      }
      PETREL_TRY(add_buffer(desc));
      if ((desc.flags & kDescFNext) == 0) {
        return std::move(segments_);
      }
      index = desc.next;
    }
  }

 private:
  // 2.7.5.3: an indirect table; its own WRITE flag is ignored (2.7.5.3.2).
  Result<void> walk_indirect(const VirtqDesc& desc) {
    if (!indirect_) {
      return ring_error("indirect descriptor but VIRTIO_F_INDIRECT_DESC was not negotiated");
    }
    if ((desc.flags & kDescFNext) != 0) {
      return ring_error("descriptor has both NEXT and INDIRECT");
    }
    if (desc.len == 0 || desc.len % sizeof(VirtqDesc) != 0) {
      return ring_error(
          fmt::format("indirect table length {} is not a nonzero multiple of 16", desc.len));
    }
    GuestAddress table(desc.addr);
    PETREL_TRY(mem_.slice(table, desc.len).context("indirect descriptor table"));
    uint32_t entries = desc.len / sizeof(VirtqDesc);
    uint32_t index = 0;
    for (;;) {
      if (index >= entries) {
        return Error(ErrorCode::kOutOfRange,
                     fmt::format("indirect descriptor index {} >= table size {}", index, entries));
      }
      PETREL_TRY_ASSIGN(auto entry, mem_.read_obj<VirtqDesc>(table + 16 * uint64_t{index}));
      if ((entry.flags & kDescFIndirect) != 0) {
        return ring_error("nested indirect descriptor table");
      }
      PETREL_TRY(add_buffer(entry));
      if ((entry.flags & kDescFNext) == 0) {
        return {};
      }
      index = entry.next;
    }
  }

  Result<void> add_buffer(const VirtqDesc& desc) {
    // Every descriptor that describes a buffer counts, direct or indirect, so a loop ends
    // after queue_size_ steps (2.7.5.3.1: no chain longer than the queue size).
    if (++count_ > queue_size_) {
      return ring_error(
          fmt::format("descriptor chain longer than the queue size {} (a loop?)", queue_size_));
    }
    if ((desc.flags & ~kKnownDescFlags) != 0) {
      return ring_error(fmt::format("unknown descriptor flags {:#x}", desc.flags));
    }
    bool writable = (desc.flags & kDescFWrite) != 0;
    if (writable) {
      seen_writable_ = true;
    } else if (seen_writable_) {
      return ring_error("device-readable descriptor after a device-writable one");
    }
    if (desc.len == 0) {
      return {};  // carries nothing; its address is never used
    }
    GuestAddress addr(desc.addr);
    PETREL_TRY(mem_.slice(addr, desc.len).context("descriptor buffer"));
    segments_.push_back(DescriptorSegment{addr, desc.len, writable});
    return {};
  }

  const GuestMemory& mem_;
  uint16_t queue_size_;
  bool indirect_;
  bool seen_writable_ = false;
  uint32_t count_ = 0;
  std::vector<DescriptorSegment> segments_;
};

}  // namespace

// ---- DescriptorChain ----

DescriptorChain::DescriptorChain(uint16_t head, std::vector<DescriptorSegment> segments)
    : head_(head), segments_(std::move(segments)) {
  auto it = std::find_if(segments_.begin(), segments_.end(),
                         [](const DescriptorSegment& s) { return s.device_writable; });
  first_writable_ = static_cast<size_t>(it - segments_.begin());
}

std::span<const DescriptorSegment> DescriptorChain::readable() const {
  return std::span<const DescriptorSegment>(segments_).first(first_writable_);
}

std::span<const DescriptorSegment> DescriptorChain::writable() const {
  return std::span<const DescriptorSegment>(segments_).subspan(first_writable_);
}

uint64_t DescriptorChain::readable_bytes() const {
  uint64_t total = 0;
  for (const auto& s : readable()) {
    total += s.len;
  }
  return total;
}

uint64_t DescriptorChain::writable_bytes() const {
  uint64_t total = 0;
  for (const auto& s : writable()) {
    total += s.len;
  }
  return total;
}

// ---- ChainReader ----

ChainReader::ChainReader(const GuestMemory& mem, const DescriptorChain& chain)
    : mem_(mem), segs_(chain.readable()) {}

uint64_t ChainReader::remaining() const {
  uint64_t total = 0;
  for (size_t i = index_; i < segs_.size(); ++i) {
    total += segs_[i].len;
  }
  return total - offset_;
}

Result<void> ChainReader::read(std::span<std::byte> out) {
  if (out.size() > remaining()) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("read of {} bytes but the chain has {} readable bytes left",
                             out.size(), remaining()));
  }
  size_t done = 0;
  size_t saved_index = index_;
  uint64_t saved_offset = offset_;
  while (done < out.size()) {
    const auto& seg = segs_[index_];
    uint64_t n = std::min<uint64_t>(seg.len - offset_, out.size() - done);
    auto copied = mem_.read(seg.addr + offset_, out.subspan(done, n));
    if (!copied.ok()) {
      index_ = saved_index;
      offset_ = saved_offset;
      return copied;
    }
    done += n;
    offset_ += n;
    if (offset_ == seg.len) {
      ++index_;
      offset_ = 0;
    }
  }
  return {};
}

Result<void> ChainReader::skip(uint64_t len) {
  if (len > remaining()) {
    return Error(
        ErrorCode::kOutOfRange,
        fmt::format("skip of {} bytes but the chain has {} readable bytes left", len, remaining()));
  }
  take(len);
  return {};
}

std::vector<DescriptorSegment> ChainReader::take(uint64_t len) {
  std::vector<DescriptorSegment> out;
  while (len > 0 && index_ < segs_.size()) {
    const auto& seg = segs_[index_];
    uint64_t n = std::min<uint64_t>(seg.len - offset_, len);
    out.push_back(DescriptorSegment{seg.addr + offset_, static_cast<uint32_t>(n), false});
    len -= n;
    offset_ += n;
    if (offset_ == seg.len) {
      ++index_;
      offset_ = 0;
    }
  }
  return out;
}

// ---- ChainWriter ----

ChainWriter::ChainWriter(const GuestMemory& mem, const DescriptorChain& chain)
    : mem_(mem), segs_(chain.writable()) {}

uint64_t ChainWriter::remaining() const {
  uint64_t total = 0;
  for (size_t i = index_; i < segs_.size(); ++i) {
    total += segs_[i].len;
  }
  return total - offset_;
}

Result<void> ChainWriter::write(std::span<const std::byte> data) {
  if (data.size() > remaining()) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("write of {} bytes but the chain has {} writable bytes left",
                             data.size(), remaining()));
  }
  // Check every piece first so that a failure writes nothing.
  for (const auto& seg : peek(data.size())) {
    PETREL_TRY(mem_.slice(seg.addr, seg.len));
  }
  size_t done = 0;
  while (done < data.size()) {
    const auto& seg = segs_[index_];
    uint64_t n = std::min<uint64_t>(seg.len - offset_, data.size() - done);
    PETREL_TRY(mem_.write(seg.addr + offset_, data.subspan(done, n)));
    done += n;
    offset_ += n;
    if (offset_ == seg.len) {
      ++index_;
      offset_ = 0;
    }
  }
  written_ += data.size();
  return {};
}

std::vector<DescriptorSegment> ChainWriter::peek(uint64_t len) const {
  std::vector<DescriptorSegment> out;
  size_t index = index_;
  uint64_t offset = offset_;
  while (len > 0 && index < segs_.size()) {
    const auto& seg = segs_[index];
    uint64_t n = std::min<uint64_t>(seg.len - offset, len);
    out.push_back(DescriptorSegment{seg.addr + offset, static_cast<uint32_t>(n), true});
    len -= n;
    ++index;
    offset = 0;
  }
  return out;
}

Result<void> ChainWriter::advance(uint64_t len) {
  if (len > remaining()) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("advance of {} bytes but the chain has {} writable bytes left", len,
                             remaining()));
  }
  written_ += len;
  while (len > 0) {
    const auto& seg = segs_[index_];
    uint64_t n = std::min<uint64_t>(seg.len - offset_, len);
    mem_.mark_dirty(seg.addr + offset_, n);
    len -= n;
    offset_ += n;
    if (offset_ == seg.len) {
      ++index_;
      offset_ = 0;
    }
  }
  return {};
}

// ---- Virtqueue ----

Virtqueue::Virtqueue(QueueLayout layout, bool event_idx, bool indirect)
    : layout_(layout), event_idx_(event_idx), indirect_(indirect) {}

Result<Virtqueue> Virtqueue::create(const GuestMemory& mem, const QueueLayout& layout,
                                    uint16_t max_size, bool event_idx, bool indirect) {
  uint16_t size = layout.size;
  if (size == 0 || !std::has_single_bit(size) || size > max_size || size > kMaxQueueSize) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("queue size {} is not a power of two in [1, {}]", size,
                             std::min(max_size, kMaxQueueSize)));
  }
  // 2.7 Virtqueue alignment requirements.
  if (layout.desc.value() % 16 != 0 || layout.avail.value() % 2 != 0 ||
      layout.used.value() % 4 != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("misaligned queue: desc {:#x} avail {:#x} used {:#x}",
                             layout.desc.value(), layout.avail.value(), layout.used.value()));
  }
  PETREL_TRY(mem.slice(layout.desc, desc_table_bytes(size)).context("descriptor table"));
  PETREL_TRY(mem.slice(layout.avail, avail_ring_bytes(size)).context("available ring"));
  PETREL_TRY(mem.slice(layout.used, used_ring_bytes(size)).context("used ring"));
  return Virtqueue(layout, event_idx, indirect);
}

Result<std::optional<DescriptorChain>> Virtqueue::pop(const GuestMemory& mem) {
  PETREL_TRY_ASSIGN(uint16_t avail_idx, mem.read_obj<uint16_t>(layout_.avail + kAvailIdx));
  // Pairs with the driver's write barrier before its idx update (2.7.13.3): the ring
  // entry and descriptors are read after the index.
  std::atomic_thread_fence(std::memory_order_acquire);
  auto pending = static_cast<uint16_t>(avail_idx - next_avail_);
  if (pending == 0) {
    return std::optional<DescriptorChain>();
  }
  if (pending > layout_.size) {
    return ring_error(fmt::format("available index {} is {} entries ahead of {} (queue size {})",
                                  avail_idx, pending, next_avail_, layout_.size));
  }
  uint64_t slot = next_avail_ % layout_.size;
  PETREL_TRY_ASSIGN(uint16_t head, mem.read_obj<uint16_t>(layout_.avail + kAvailRing + 2 * slot));
  ChainWalker walker(mem, layout_.size, indirect_);
  PETREL_TRY_ASSIGN(auto segments,
                    walker.walk(layout_.desc, head).context(fmt::format("chain at head {}", head)));
  ++next_avail_;
  return std::optional<DescriptorChain>(DescriptorChain(head, std::move(segments)));
}

void Virtqueue::undo_pop() {
  --next_avail_;
}

Result<void> Virtqueue::add_used(const GuestMemory& mem, uint16_t head, uint32_t len) {
  if (head >= layout_.size) {
    return Error(ErrorCode::kInternal,
                 fmt::format("used head {} >= queue size {}", head, layout_.size));
  }
  uint64_t slot = next_used_ % layout_.size;
  PETREL_TRY(mem.write_obj(layout_.used + kUsedRing + 8 * slot, VirtqUsedElem{head, len}));
  // 2.7.8.2 / 2.7.13: the element (and the buffer contents before it) must be visible
  // before the index that publishes them.
  std::atomic_thread_fence(std::memory_order_release);
  auto next = static_cast<uint16_t>(next_used_ + 1);
  PETREL_TRY(mem.write_obj<uint16_t>(layout_.used + kUsedIdx, next));
  next_used_ = next;
  return {};
}

Result<void> Virtqueue::add_used_batch(const GuestMemory& mem,
                                       std::span<const UsedElement> elements) {
  if (elements.size() > layout_.size) {
    return Error(ErrorCode::kInternal,
                 fmt::format("{} used elements for a queue of {}", elements.size(), layout_.size));
  }
  for (const auto& e : elements) {
    if (e.head >= layout_.size) {
      return Error(ErrorCode::kInternal,
                   fmt::format("used head {} >= queue size {}", e.head, layout_.size));
    }
  }
  if (elements.empty()) {
    return {};
  }
  uint16_t next = next_used_;
  for (const auto& e : elements) {
    uint64_t slot = next % layout_.size;
    PETREL_TRY(mem.write_obj(layout_.used + kUsedRing + 8 * slot, VirtqUsedElem{e.head, e.len}));
    next = static_cast<uint16_t>(next + 1);
  }
  // As in add_used: every element before the index.
  std::atomic_thread_fence(std::memory_order_release);
  PETREL_TRY(mem.write_obj<uint16_t>(layout_.used + kUsedIdx, next));
  next_used_ = next;
  return {};
}

Result<bool> Virtqueue::should_notify(const GuestMemory& mem) {
  // The used idx store must be visible before we read the driver's used_event/flags, or
  // both sides could miss each other (Linux virtqueue_kick_prepare, QEMU
  // virtio_should_notify): a full fence, not just release/acquire.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx_) {
    PETREL_TRY_ASSIGN(uint16_t flags, mem.read_obj<uint16_t>(layout_.avail + kAvailFlags));
    return (flags & kAvailFNoInterrupt) == 0;
  }
  // 2.7.7.2: used_event sits after the avail ring's entries.
  PETREL_TRY_ASSIGN(uint16_t used_event,
                    mem.read_obj<uint16_t>(layout_.avail + kAvailRing + 2 * uint64_t{size()}));
  bool was_valid = signalled_used_valid_;
  uint16_t old_idx = signalled_used_;
  signalled_used_ = next_used_;
  signalled_used_valid_ = true;
  return !was_valid || need_event(used_event, next_used_, old_idx);
}

Result<void> Virtqueue::update_avail_event(const GuestMemory& mem) {
  if (!event_idx_) {
    return {};
  }
  // 2.7.8: avail_event sits after the used ring's elements.
  PETREL_TRY(mem.write_obj<uint16_t>(layout_.used + kUsedRing + 8 * uint64_t{size()}, next_avail_));
  // The store must be visible before the caller re-reads the avail idx (same reasoning as
  // should_notify, mirrored).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return {};
}

void Virtqueue::set_indices(uint16_t next_avail, uint16_t next_used) {
  next_avail_ = next_avail;
  next_used_ = next_used;
  signalled_used_valid_ = false;
}

}  // namespace petrel::virtio
