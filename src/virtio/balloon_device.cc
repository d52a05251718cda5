// BalloonDevice: configuration, activation and the queues (balloon_device.h). The requests
// themselves: balloon_device_pages.cc; quiesce and saved state: balloon_device_state.cc.
#include "virtio/balloon_device.h"

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "virtio/virtio_spec.h"
#include "vmm/base/state_codec.h"

namespace petrel::virtio {

namespace {

constexpr unsigned kBudget = 64;     // chains per queue per event-loop turn; the rest is posted
constexpr uint64_t kConfigSize = 8;  // num_pages, actual (5.5.4)
constexpr uint64_t kActualOffset = 4;

}  // namespace

Result<std::shared_ptr<BalloonDevice>> BalloonDevice::create(const GuestMemory& memory,
                                                             const BalloonOptions& options,
                                                             boost::asio::io_context& io) {
  return std::make_shared<BalloonDevice>(Key{}, memory, options, io);
}

BalloonDevice::BalloonDevice(Key, const GuestMemory& memory, const BalloonOptions& options,
                             boost::asio::io_context& io)
    : memory_(memory),
      options_(options),
      io_(io),
      target_(options.initial_target_pages),
      pages_(memory) {
  offered_ = feature_bit(kFStatsVq);
  num_queues_ = 3;
  if (options.deflate_on_oom) {
    offered_ |= feature_bit(kFDeflateOnOom);
  }
  if (options.free_page_reporting) {
    offered_ |= feature_bit(kFPageReporting);
    num_queues_ = 5;
  }
}

BalloonDevice::~BalloonDevice() = default;

uint32_t BalloonDevice::device_type() const {
  return kDeviceBalloon;
}

std::vector<uint16_t> BalloonDevice::queue_max_sizes() const {
  return std::vector<uint16_t>(num_queues_, kQueueSize);
}

void BalloonDevice::read_config(uint64_t offset, std::span<std::byte> data) const {
  std::vector<std::byte> config;
  {
    std::lock_guard lock(config_mutex_);
    put_le(config, target_, 4);
    put_le(config, actual_, 4);
  }
  for (size_t i = 0; i < data.size(); ++i) {
    const bool inside = offset < kConfigSize && i < kConfigSize - offset;
    data[i] = inside ? config[offset + i] : std::byte{0};
  }
}

void BalloonDevice::write_config(uint64_t offset, std::span<const std::byte> data) {
  // Only `actual` is driver-writable (5.5.4); byte-wise writes are allowed (legacy drivers
  // wrote it one byte at a time, 5.5.6.2.1).
  std::lock_guard lock(config_mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset > kConfigSize || i >= kConfigSize - offset || offset + i < kActualOffset) {
      continue;
    }
    const unsigned shift = 8 * static_cast<unsigned>(offset + i - kActualOffset);
    actual_ = (actual_ & ~(uint32_t{0xff} << shift)) |
              (static_cast<uint32_t>(std::to_integer<uint8_t>(data[i])) << shift);
  }
}

uint32_t BalloonDevice::config_generation() const {
  std::lock_guard lock(config_mutex_);
  return generation_config_;
}

void BalloonDevice::set_target_pages(uint32_t pages) {
  {
    std::lock_guard lock(config_mutex_);
    if (target_ == pages) {
      return;
    }
    target_ = pages;
    ++generation_config_;
  }
  boost::asio::post(io_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) {
      self->post_config_notify();
    }
  });
}

void BalloonDevice::post_config_notify() {
  if (!active_) {
    return;  // the driver reads num_pages when it starts
  }
  if (quiesced_) {
    config_notify_pending_ = true;
    return;
  }
  irq_->notify_config();
}

uint32_t BalloonDevice::target_pages() const {
  std::lock_guard lock(config_mutex_);
  return target_;
}

uint32_t BalloonDevice::actual_pages() const {
  std::lock_guard lock(config_mutex_);
  return actual_;
}

BalloonStats BalloonDevice::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

BalloonCounters BalloonDevice::counters() const {
  return BalloonCounters{counters_.inflated.load(),       counters_.deflated.load(),
                         counters_.reported.load(),       counters_.ignored.load(),
                         counters_.discard_errors.load(), counters_.oom_deflated.load()};
}

Result<void> BalloonDevice::activate(ActivateContext ctx) {
  if (active_) {
    return Error(ErrorCode::kState, "virtio-balloon: already active");
  }
  if (ctx.memory != &memory_ || ctx.interrupt == nullptr || ctx.io == nullptr ||
      ctx.queues.size() != num_queues_) {
    return Error(ErrorCode::kInternal, "virtio-balloon: incomplete activation context");
  }
  features_ = ctx.features;
  const bool stats = (features_ & feature_bit(kFStatsVq)) != 0;
  const bool reporting = (features_ & feature_bit(kFPageReporting)) != 0;
  roles_.assign(num_queues_, Role::kNone);
  roles_[kInflateQueue] = Role::kInflate;
  roles_[kDeflateQueue] = Role::kDeflate;
  if (stats) {
    roles_[kStatsQueue] = Role::kStats;
  }
  if (reporting) {
    roles_[stats ? 3 : 2] = Role::kReporting;        // Linux / QEMU numbering
    roles_[kSpecReportingQueue] = Role::kReporting;  // the spec's table
  }
  for (size_t i = 0; i < num_queues_; ++i) {
    if (ctx.queues[i] && roles_[i] == Role::kNone) {
      spdlog::debug("virtio-balloon: queue {} enabled but unused with features {:#x}", i,
                    features_);
    }
  }
  ++generation_;
  irq_ = ctx.interrupt;
  loop_ = ctx.io;
  queues_ = std::move(ctx.queues);
  stats_timer_.emplace(*loop_);
  active_ = true;
  quiesced_ = false;
  for (uint16_t i = 0; i < num_queues_ && active_; ++i) {
    process_queue(i);
  }
  return {};
}

void BalloonDevice::reset() {
  ++generation_;
  active_ = false;
  quiesced_ = false;
  config_notify_pending_ = false;
  if (stats_timer_) {
    stats_timer_->cancel();
  }
  held_stats_.reset();
  stats_rewound_ = false;
  queues_.clear();
  roles_.clear();
  irq_ = nullptr;
  pages_.clear();
  std::lock_guard lock(config_mutex_);
  actual_ = 0;
}

void BalloonDevice::process_queue(uint16_t index) {
  if (!active_ || quiesced_ || index >= queues_.size() || !queues_[index] ||
      roles_[index] == Role::kNone) {
    return;
  }
  drain(index);
}

bool BalloonDevice::drain(uint16_t index) {
  Virtqueue& queue = *queues_[index];
  bool used = false;
  for (unsigned i = 0; i < kBudget; ++i) {
    auto popped = queue.pop(memory_);
    if (popped.ok() && !*popped) {
      // 2.7.10: with EVENT_IDX, ask for a kick on the next buffer and look once more.
      if (auto r = queue.update_avail_event(memory_); !r.ok()) {
        fail_ring(index, r.error());
        return false;
      }
      popped = queue.pop(memory_);
    }
    if (!popped.ok()) {
      fail_ring(index, popped.error());
      return false;
    }
    if (!*popped) {
      break;
    }
    const DescriptorChain& chain = **popped;
    switch (roles_[index]) {
      case Role::kInflate:
      case Role::kDeflate:
        handle_pfns(chain, roles_[index] == Role::kInflate);
        break;
      case Role::kReporting:
        handle_report(chain);
        break;
      case Role::kStats:
        if (!handle_stats(index, chain)) {
          return false;
        }
        continue;  // held, or returned by handle_stats itself
      case Role::kNone:
        break;
    }
    if (auto r = queue.add_used(memory_, chain.head(), 0); !r.ok()) {
      fail_ring(index, r.error());
      return false;
    }
    used = true;
    if (i + 1 == kBudget) {
      boost::asio::post(*loop_, [weak = weak_from_this(), gen = generation_, index] {
        auto self = weak.lock();
        if (self != nullptr && gen == self->generation_) {
          self->process_queue(index);
        }
      });
    }
  }
  return !used || notify_used(index);
}

// After add_used: the used-buffer notification, if the driver wants one (2.7.7.2).
bool BalloonDevice::notify_used(uint16_t index) {
  auto notify = queues_[index]->should_notify(memory_);
  if (!notify.ok()) {
    fail_ring(index, notify.error());
    return false;
  }
  if (*notify) {
    irq_->notify_queue(index);
  }
  return true;
}

bool BalloonDevice::handle_stats(uint16_t index, const DescriptorChain& chain) {
  if (held_stats_) {
    // 5.5.6.3.1: at most one buffer; give the older one back (it asks for fresh stats).
    spdlog::debug("virtio-balloon: a second stats buffer; returning the held one");
    return_stats_buffer();
    if (!active_) {
      return false;
    }
  }
  stats_queue_ = index;
  held_stats_ = chain.head();
  if (stats_rewound_) {
    stats_rewound_ = false;  // the buffer given back at quiesce: already parsed
  } else {
    ChainReader reader(memory_, chain);
    std::vector<std::byte> bytes(
        static_cast<size_t>(std::min<uint64_t>(reader.remaining(), kMaxStatsBytes)));
    if (reader.read(bytes).ok()) {
      BalloonStats parsed = BalloonStats::parse(bytes);
      parsed.received_at = std::chrono::system_clock::now();
      if (parsed.unknown_tags > 0 || parsed.trailing_bytes > 0) {
        spdlog::debug("virtio-balloon: stats with {} unknown tags, {} trailing bytes",
                      parsed.unknown_tags, parsed.trailing_bytes);
      }
      std::lock_guard lock(stats_mutex_);
      stats_ = parsed;
    }
  }
  arm_stats_timer();
  return true;
}

void BalloonDevice::arm_stats_timer() {
  if (options_.stats_interval.count() <= 0 || !stats_timer_) {
    return;
  }
  stats_timer_->expires_after(options_.stats_interval);
  stats_timer_->async_wait([weak = weak_from_this(),
                            gen = generation_](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || self == nullptr || gen != self->generation_ || !self->active_ || self->quiesced_) {
      return;
    }
    self->return_stats_buffer();
  });
}

// 5.5.6.3: the device uses the held buffer to request new statistics.
void BalloonDevice::return_stats_buffer() {
  if (!held_stats_ || !queues_[stats_queue_]) {
    return;
  }
  const uint16_t head = *held_stats_;
  held_stats_.reset();
  if (auto r = queues_[stats_queue_]->add_used(memory_, head, 0); !r.ok()) {
    fail_ring(stats_queue_, r.error());
    return;
  }
  notify_used(stats_queue_);
}

void BalloonDevice::fail_ring(uint16_t index, const Error& error) {
  spdlog::warn("virtio-balloon: queue {} broken, device needs reset: {}", index, error.to_string());
  ++generation_;
  active_ = false;
  if (stats_timer_) {
    stats_timer_->cancel();
  }
  irq_->set_needs_reset();
}

}  // namespace petrel::virtio
