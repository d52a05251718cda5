#include "virtio/block_device.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/disk_open.h"
#include "virtio/virtio_spec.h"

namespace petrel::virtio {
namespace {

// 5.2.4 struct virtio_blk_config (little-endian; x86 only).
struct __attribute__((packed)) ConfigSpace {
  uint64_t capacity;  // 512-byte sectors
  uint32_t size_max;
  uint32_t seg_max;
  uint16_t cylinders;
  uint8_t heads;
  uint8_t sectors;
  uint32_t blk_size;
  uint8_t physical_block_exp;
  uint8_t alignment_offset;
  uint16_t min_io_size;
  uint32_t opt_io_size;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
  uint32_t max_secure_erase_sectors;
  uint32_t max_secure_erase_seg;
  uint32_t secure_erase_sector_alignment;
};
static_assert(offsetof(ConfigSpace, blk_size) == 20);
static_assert(offsetof(ConfigSpace, num_queues) == 34);
static_assert(offsetof(ConfigSpace, max_discard_sectors) == 36);
static_assert(offsetof(ConfigSpace, write_zeroes_may_unmap) == 56);
static_assert(sizeof(ConfigSpace) == 72);

std::string_view op_name(DiskOpKind kind) {
  switch (kind) {
    case DiskOpKind::kRead:
      return "read";
    case DiskOpKind::kWrite:
      return "write";
    case DiskOpKind::kFlush:
      return "flush";
    case DiskOpKind::kDiscard:
      return "discard";
    case DiskOpKind::kWriteZeroes:
      return "write-zeroes";
  }
  return "unknown";
}

}  // namespace

std::string BlockDevice::default_serial(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  const std::string& text = ec ? path.native() : abs.native();
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (char c : text) {
    hash = (hash ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  }
  return fmt::format("ptrl{:016x}", hash);
}

Result<std::shared_ptr<BlockDevice>> BlockDevice::open(const BlockConfig& config) {
  PETREL_TRY_ASSIGN(auto backend, open_disk(config, kQueueSize));
  std::string serial = config.serial.empty() ? default_serial(config.path) : config.serial;
  spdlog::info("virtio-blk {}: {} sectors, {}, engine {}, serial {}", config.path.string(),
               backend->size() / blk::kSectorSize,
               backend->read_only() ? "read-only" : "read-write", backend->engine_name(),
               serial.substr(0, blk::kIdBytes));
  return create(std::move(backend), std::move(serial));
}

std::shared_ptr<BlockDevice> BlockDevice::create(std::unique_ptr<DiskBackend> backend,
                                                 std::string serial) {
  return std::make_shared<BlockDevice>(Passkey{}, std::move(backend), std::move(serial));
}

BlockDevice::BlockDevice(Passkey /*key*/, std::unique_ptr<DiskBackend> backend, std::string serial)
    : backend_(std::move(backend)),
      serial_(std::move(serial)),
      capacity_sectors_(backend_->size() / blk::kSectorSize) {
  if (serial_.size() > blk::kIdBytes) {
    serial_.resize(blk::kIdBytes);
  }
  ConfigSpace cfg{};
  cfg.capacity = capacity_sectors_;
  cfg.size_max = kSizeMax;
  cfg.seg_max = kSegMax;
  cfg.blk_size = blk::kSectorSize;
  cfg.num_queues = 1;
  cfg.max_discard_sectors = kMaxDiscardSectors;
  cfg.max_discard_seg = 1;
  cfg.discard_sector_alignment = kDiscardSectorAlignment;
  cfg.max_write_zeroes_sectors = kMaxDiscardSectors;
  cfg.max_write_zeroes_seg = 1;
  cfg.write_zeroes_may_unmap = 1;
  config_.resize(sizeof(cfg));
  std::memcpy(config_.data(), &cfg, sizeof(cfg));
}

BlockDevice::~BlockDevice() {
  reset();
}

uint32_t BlockDevice::device_type() const {
  return kDeviceBlock;
}

uint64_t BlockDevice::device_features() const {
  uint64_t features = feature_bit(blk::kFSizeMax) | feature_bit(blk::kFSegMax) |
                      feature_bit(blk::kFBlkSize) | feature_bit(blk::kFFlush) |
                      feature_bit(blk::kFDiscard) | feature_bit(blk::kFWriteZeroes);
  if (backend_->read_only()) {
    features |= feature_bit(blk::kFRo);
  }
  return features;
}

void BlockDevice::read_config(uint64_t offset, std::span<std::byte> data) const {
  std::fill(data.begin(), data.end(), std::byte{0});
  if (offset >= config_.size()) {
    return;
  }
  uint64_t n = std::min<uint64_t>(data.size(), config_.size() - offset);
  std::memcpy(data.data(), config_.data() + offset, n);
}

void BlockDevice::write_config(uint64_t offset, std::span<const std::byte> data) {
  // Only `writeback` is writable, and only with VIRTIO_BLK_F_CONFIG_WCE, not offered.
  spdlog::debug("virtio-blk: ignored config write of {} bytes at {:#x}", data.size(), offset);
}

Result<void> BlockDevice::activate(ActivateContext ctx) {
  if (active_) {
    return Error(ErrorCode::kState, "virtio-blk activated twice without a reset");
  }
  if (ctx.memory == nullptr || ctx.interrupt == nullptr || ctx.io == nullptr) {
    return Error(ErrorCode::kInternal, "virtio-blk activate: incomplete context");
  }
  mem_ = ctx.memory;
  interrupt_ = ctx.interrupt;
  if (!ctx.queues.empty() && ctx.queues[0]) {
    queue_ = std::move(*ctx.queues[0]);
    in_flight_.assign(queue_->size(), std::nullopt);
  }
  flush_negotiated_ = (ctx.features & feature_bit(blk::kFFlush)) != 0;
  limits_ = blk::Limits{
      .capacity_sectors = capacity_sectors_,
      .read_only = backend_->read_only(),
      .discard = (ctx.features & feature_bit(blk::kFDiscard)) != 0,
      .write_zeroes = (ctx.features & feature_bit(blk::kFWriteZeroes)) != 0,
      .seg_max = kSegMax,
      .max_data_bytes = kMaxDataBytes,
      .max_discard_sectors = kMaxDiscardSectors,
      .max_discard_seg = 1,
      .max_write_zeroes_sectors = kMaxDiscardSectors,
      .max_write_zeroes_seg = 1,
  };
  PETREL_TRY(backend_->attach(
      *ctx.io, [this](std::span<const DiskCompletion> done) { on_completions(done); }));
  broken_ = false;
  active_ = true;
  return {};
}

void BlockDevice::process_queue(uint16_t index) {
  if (!active_ || broken_ || index != 0 || !queue_) {
    return;
  }
  processing_ = true;
  bool rechecked = false;
  while (!broken_) {
    auto popped = queue_->pop(*mem_);
    if (!popped.ok()) {
      ring_broken(popped.error());
      break;
    }
    if (!*popped) {
      // 2.7.10 (VIRTIO_F_EVENT_IDX): publish avail_event, then look once more so that a
      // chain added meanwhile is not left waiting for a kick that will not come.
      if (rechecked) {
        break;
      }
      if (auto r = queue_->update_avail_event(*mem_); !r.ok()) {
        ring_broken(r.error());
        break;
      }
      rechecked = true;
      continue;
    }
    rechecked = false;
    handle(**popped);
  }
  processing_ = false;
  backend_->commit();
  signal_used();
}

void BlockDevice::handle(const DescriptorChain& chain) {
  uint16_t head = chain.head();
  if (head >= in_flight_.size() || in_flight_[head]) {
    // The driver made a chain available again while the device still owns it (2.7.13).
    ring_broken(Error(ErrorCode::kGuest, fmt::format("head {} reused while in flight", head)));
    return;
  }
  blk::ParsedRequest parsed = blk::parse_request(*mem_, chain, limits_);
  if (parsed.error != blk::kSOk) {
    spdlog::debug("virtio-blk: request at head {} rejected ({}): {}", head, parsed.error,
                  parsed.reason);
    finish(head, parsed.status, parsed.error, parsed.status ? 1 : 0);
    return;
  }
  blk::Request& req = parsed.request;
  if (req.type == blk::RequestType::kGetId) {
    std::array<char, blk::kIdBytes> id{};
    std::memcpy(id.data(), serial_.data(), std::min(serial_.size(), id.size()));
    uint64_t off = 0;
    for (const auto& seg : req.data) {
      auto r = mem_->write(seg.addr, std::as_bytes(std::span(id.data() + off, seg.len)));
      if (!r.ok()) {
        finish(head, parsed.status, blk::kSIoErr, 1);
        return;
      }
      off += seg.len;
    }
    finish(head, parsed.status, blk::kSOk, static_cast<uint32_t>(req.data_bytes + 1));
    return;
  }
  auto op = make_op(req);
  if (!op.ok()) {
    spdlog::debug("virtio-blk: request at head {}: {}", head, op.error().to_string());
    finish(head, parsed.status, blk::kSIoErr, 1);
    return;
  }
  InFlight entry{*parsed.status, 1, {}, op->kind, op->offset, op->length};
  if (req.type == blk::RequestType::kIn) {
    entry.used_len = static_cast<uint32_t>(req.data_bytes + 1);
    entry.dirty = std::move(req.data);
  }
  if (auto r = backend_->submit(std::move(op).value(), tag_of(head)); !r.ok()) {
    spdlog::warn("virtio-blk: {}", r.error().to_string());
    report_io_error(entry.kind, entry.offset, r.error().to_string());
    finish(head, parsed.status, blk::kSIoErr, 1);
    return;
  }
  in_flight_[head] = std::move(entry);
}

Result<DiskOp> BlockDevice::make_op(blk::Request& req) const {
  DiskOp op;
  op.offset = req.sector * blk::kSectorSize;  // in capacity: cannot overflow
  op.length = req.num_sectors * blk::kSectorSize;
  switch (req.type) {
    case blk::RequestType::kIn:
    case blk::RequestType::kOut: {
      bool in = req.type == blk::RequestType::kIn;
      op.kind = in ? DiskOpKind::kRead : DiskOpKind::kWrite;
      op.fua = !in && !flush_negotiated_;  // 5.2.6.3: without FLUSH, write through
      op.iov.reserve(req.data.size());
      for (const auto& seg : req.data) {
        // slice() for the device reading guest RAM (OUT); slice_mut() for the device
        // writing into it (IN), which marks the pages dirty; again on completion.
        auto span = in ? mem_->slice_mut(seg.addr, seg.len) : mem_->slice(seg.addr, seg.len);
        if (!span.ok()) {
          return std::move(span).error();
        }
        op.iov.push_back(iovec{span->data(), span->size()});
      }
      break;
    }
    case blk::RequestType::kFlush:
      op.kind = DiskOpKind::kFlush;
      op.offset = 0;
      op.length = 0;
      break;
    case blk::RequestType::kDiscard:
      op.kind = DiskOpKind::kDiscard;
      break;
    case blk::RequestType::kWriteZeroes:
      op.kind = DiskOpKind::kWriteZeroes;
      op.unmap = req.unmap;
      break;
    case blk::RequestType::kGetId:
      return Error(ErrorCode::kInternal, "GET_ID has no disk op");
  }
  return op;
}

void BlockDevice::on_completions(std::span<const DiskCompletion> done) {
  for (const auto& c : done) {
    auto head = static_cast<uint16_t>(c.tag & 0xffff);
    if ((c.tag >> 16) != generation_ || head >= in_flight_.size() || !in_flight_[head]) {
      continue;  // from before a reset: already dropped
    }
    InFlight entry = std::move(*in_flight_[head]);
    in_flight_[head].reset();
    if (draining_ || broken_) {
      continue;
    }
    if (c.error != 0) {
      spdlog::debug("virtio-blk: request at head {} failed: {}", head, std::strerror(c.error));
      report_io_error(entry.kind, entry.offset, std::strerror(c.error));
      finish(head, entry.status, blk::kSIoErr, 1);
      continue;
    }
    for (const auto& seg : entry.dirty) {
      mem_->mark_dirty(seg.addr, seg.len);
    }
    count_success(entry);
    finish(head, entry.status, blk::kSOk, entry.used_len);
  }
  if (!processing_ && !draining_) {
    signal_used();
    maybe_idle();
  }
}

void BlockDevice::finish(uint16_t head, std::optional<GuestAddress> status, uint8_t value,
                         uint32_t used_len) {
  if (value != blk::kSOk) {
    stats_.errors.fetch_add(1, std::memory_order_relaxed);
  }
  if (status) {
    // The address was checked by the virtqueue; a failure here cannot be reported anyway.
    (void)mem_->write_obj<uint8_t>(*status, value);
  }
  if (auto r = queue_->add_used(*mem_, head, used_len); !r.ok()) {
    ring_broken(r.error());
    return;
  }
  pending_notify_ = true;
}

BlockStats BlockDevice::stats() const {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  return BlockStats{
      .read_bytes = stats_.read_bytes.load(kRelaxed),
      .write_bytes = stats_.write_bytes.load(kRelaxed),
      .read_ops = stats_.read_ops.load(kRelaxed),
      .write_ops = stats_.write_ops.load(kRelaxed),
      .flush_ops = stats_.flush_ops.load(kRelaxed),
      .discard_ops = stats_.discard_ops.load(kRelaxed),
      .errors = stats_.errors.load(kRelaxed),
  };
}

void BlockDevice::count_success(const InFlight& entry) {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  switch (entry.kind) {
    case DiskOpKind::kRead:
      stats_.read_ops.fetch_add(1, kRelaxed);
      stats_.read_bytes.fetch_add(entry.length, kRelaxed);
      break;
    case DiskOpKind::kWrite:
      stats_.write_ops.fetch_add(1, kRelaxed);
      stats_.write_bytes.fetch_add(entry.length, kRelaxed);
      break;
    case DiskOpKind::kFlush:
      stats_.flush_ops.fetch_add(1, kRelaxed);
      break;
    case DiskOpKind::kDiscard:
    case DiskOpKind::kWriteZeroes:
      stats_.discard_ops.fetch_add(1, kRelaxed);
      break;
  }
}

void BlockDevice::report_io_error(DiskOpKind kind, uint64_t offset, const std::string& what) {
  if (error_handler_) {
    error_handler_(fmt::format("{} at byte {} failed: {}", op_name(kind), offset, what));
  }
}

void BlockDevice::signal_used() {
  if (!pending_notify_ || broken_) {
    return;
  }
  pending_notify_ = false;
  auto notify = queue_->should_notify(*mem_);
  if (!notify.ok()) {
    ring_broken(notify.error());
    return;
  }
  if (*notify) {
    interrupt_->notify_queue(0);
  }
}

void BlockDevice::ring_broken(const Error& error) {
  if (broken_) {
    return;
  }
  spdlog::warn("virtio-blk: the driver broke the request queue ({}); needs reset",
               error.to_string());
  broken_ = true;
  interrupt_->set_needs_reset();
}

void BlockDevice::reset() {
  draining_ = true;
  backend_->drain();
  backend_->detach();
  draining_ = false;
  in_flight_.clear();
  queue_.reset();
  mem_ = nullptr;
  interrupt_ = nullptr;
  active_ = false;
  broken_ = false;
  processing_ = false;
  pending_notify_ = false;
  idle_ = nullptr;
  ++generation_;
}

}  // namespace petrel::virtio
