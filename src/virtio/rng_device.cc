#include "virtio/rng_device.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "virtio/virtio_spec.h"

namespace petrel::virtio {

namespace {

constexpr unsigned kBudget = 256;  // chains per event-loop turn; the rest is posted

}  // namespace

Result<std::shared_ptr<RngDevice>> RngDevice::create() {
  return std::make_shared<RngDevice>(Key{});
}

uint32_t RngDevice::device_type() const {
  return kDeviceRng;
}

void RngDevice::read_config(uint64_t /*offset*/, std::span<std::byte> data) const {
  std::fill(data.begin(), data.end(), std::byte{0});  // 5.4.4: no configuration
}

void RngDevice::write_config(uint64_t offset, std::span<const std::byte> data) {
  spdlog::debug("virtio-rng: {}-byte config write at {:#x} ignored", data.size(), offset);
}

Result<void> RngDevice::activate(ActivateContext ctx) {
  if (active_) {
    return Error(ErrorCode::kState, "virtio-rng: already active");
  }
  if (ctx.memory == nullptr || ctx.interrupt == nullptr || ctx.io == nullptr ||
      ctx.queues.size() != 1) {
    return Error(ErrorCode::kInternal, "virtio-rng: incomplete activation context");
  }
  ++generation_;
  mem_ = ctx.memory;
  irq_ = ctx.interrupt;
  loop_ = ctx.io;
  queue_ = std::move(ctx.queues[0]);
  active_ = true;
  process_queue(0);
  return {};
}

void RngDevice::reset() {
  ++generation_;
  active_ = false;
  quiesced_ = false;
  queue_.reset();
  mem_ = nullptr;
  irq_ = nullptr;
}

Result<uint32_t> RngDevice::fill(const DescriptorChain& chain) {
  ChainWriter writer(*mem_, chain);
  const uint64_t want = std::min<uint64_t>(writer.remaining(), kMaxRequestBytes);
  uint64_t done = 0;
  for (const auto& seg : writer.peek(want)) {
    PETREL_TRY_ASSIGN(auto bytes, mem_->slice_mut(seg.addr, seg.len));
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::getrandom(bytes.data() + off, bytes.size() - off, GRND_NONBLOCK);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        if (n < 0 && errno != EAGAIN) {
          spdlog::warn("virtio-rng: getrandom: {}", std::strerror(errno));
        }
        PETREL_TRY(writer.advance(done + off));
        return static_cast<uint32_t>(done + off);
      }
      off += static_cast<size_t>(n);
    }
    done += off;
  }
  PETREL_TRY(writer.advance(done));
  return static_cast<uint32_t>(done);
}

void RngDevice::process_queue(uint16_t index) {
  if (!active_ || quiesced_ || index != 0 || !queue_) {
    return;
  }
  bool used = false;
  for (unsigned i = 0; i < kBudget; ++i) {
    auto popped = queue_->pop(*mem_);
    if (popped.ok() && !*popped) {
      // 2.7.10: with EVENT_IDX, ask for a kick on the next buffer and look once more.
      if (auto r = queue_->update_avail_event(*mem_); !r.ok()) {
        fail_ring(r.error());
        return;
      }
      popped = queue_->pop(*mem_);
    }
    if (!popped.ok()) {
      fail_ring(popped.error());
      return;
    }
    if (!*popped) {
      break;
    }
    auto written = fill(**popped);
    if (!written.ok()) {
      fail_ring(written.error());
      return;
    }
    if (bytes_served_.fetch_add(*written, std::memory_order_relaxed) == 0 && *written > 0) {
      spdlog::info("virtio-rng: served the driver's first request ({} bytes)", *written);
    }
    if (auto r = queue_->add_used(*mem_, (*popped)->head(), *written); !r.ok()) {
      fail_ring(r.error());
      return;
    }
    used = true;
    if (i + 1 == kBudget) {
      boost::asio::post(*loop_, [weak = weak_from_this(), gen = generation_] {
        auto self = weak.lock();
        if (self != nullptr && gen == self->generation_) {
          self->process_queue(0);
        }
      });
    }
  }
  if (!used) {
    return;
  }
  auto notify = queue_->should_notify(*mem_);
  if (!notify.ok()) {
    fail_ring(notify.error());
    return;
  }
  if (*notify) {
    irq_->notify_queue(0);
  }
}

void RngDevice::quiesce(std::function<void()> idle) {
  quiesced_ = true;
  ++generation_;  // a posted continuation becomes a no-op
  idle();
}

void RngDevice::unquiesce() {
  if (!quiesced_) {
    return;
  }
  quiesced_ = false;
  process_queue(0);
}

std::vector<std::optional<QueueIndices>> RngDevice::queue_indices() const {
  if (!queue_) {
    return {std::nullopt};
  }
  return {QueueIndices{queue_->next_avail(), queue_->next_used()}};
}

void RngDevice::fail_ring(const Error& error) {
  spdlog::warn("virtio-rng: queue broken, device needs reset: {}", error.to_string());
  ++generation_;
  active_ = false;
  irq_->set_needs_reset();
}

}  // namespace petrel::virtio
