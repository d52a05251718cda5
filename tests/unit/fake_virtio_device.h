// FakeVirtioDevice: a VirtioDevice for transport tests. It records every call the transport
// makes (activate with its negotiated features and queue layouts, process_queue, reset,
// config reads/writes) and lets the test wait for them, since activate / process_queue /
// reset arrive on the event-loop thread. Optionally it completes every available chain
// when a queue is kicked (pop, add_used with length 0, notify_queue if the driver wants an
// interrupt), so a test can drive the whole kick -> used ring -> interrupt path.
//
// Thread-safety: every method may be called from any thread (a mutex guards the records).
// The VirtioDevice calls follow that interface's thread contract. Test code only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "virtio/virtio_device.h"
#include "virtio/virtio_spec.h"
#include "virtio/virtqueue.h"

namespace petrel::testing {

class FakeVirtioDevice : public virtio::VirtioDevice {
 public:
  struct Activation {
    uint64_t features = 0;
    const GuestMemory* memory = nullptr;
    std::vector<std::optional<virtio::QueueLayout>> queues;  // nullopt: not enabled
  };
  struct ConfigAccess {
    bool write = false;
    uint64_t offset = 0;
    size_t size = 0;
  };

  explicit FakeVirtioDevice(uint32_t type = virtio::kDeviceRng,
                            std::vector<uint16_t> max_sizes = {16, 16}, uint64_t features = 0,
                            size_t config_size = 16)
      : type_(type), max_sizes_(std::move(max_sizes)), features_(features), config_(config_size) {
    for (size_t i = 0; i < config_.size(); ++i) {
      config_[i] = static_cast<std::byte>(0xa0 + i);
    }
  }

  // ---- VirtioDevice ----
  uint32_t device_type() const override { return type_; }
  std::vector<uint16_t> queue_max_sizes() const override { return max_sizes_; }
  uint64_t device_features() const override { return features_; }

  void read_config(uint64_t offset, std::span<std::byte> data) const override {
    std::lock_guard lock(mutex_);
    config_accesses_.push_back({false, offset, data.size()});
    for (size_t i = 0; i < data.size(); ++i) {
      bool inside = offset < config_.size() && i < config_.size() - offset;
      data[i] = inside ? config_[offset + i] : std::byte{0};
    }
  }
  void write_config(uint64_t offset, std::span<const std::byte> data) override {
    std::lock_guard lock(mutex_);
    config_accesses_.push_back({true, offset, data.size()});
    for (size_t i = 0; i < data.size(); ++i) {
      if (offset < config_.size() && i < config_.size() - offset) {
        config_[offset + i] = data[i];
      }
    }
  }
  uint32_t config_generation() const override {
    std::lock_guard lock(mutex_);
    return generation_;
  }

  Result<void> activate(virtio::ActivateContext ctx) override {
    std::lock_guard lock(mutex_);
    Activation a{ctx.features, ctx.memory, {}};
    for (const auto& q : ctx.queues) {
      a.queues.push_back(q ? std::optional(q->layout()) : std::nullopt);
    }
    activations_.push_back(std::move(a));
    cv_.notify_all();
    if (fail_activate_) {
      return Error(ErrorCode::kGuest, "fake activation failure");
    }
    ctx_ = std::move(ctx);
    return {};
  }
  void process_queue(uint16_t index) override {
    std::unique_lock lock(mutex_);
    processed_.push_back(index);
    if (complete_on_process_ && ctx_ && index < ctx_->queues.size() && ctx_->queues[index]) {
      complete_all(*ctx_->queues[index], index);
    }
    cv_.notify_all();
  }
  void reset() override {
    std::lock_guard lock(mutex_);
    ++resets_;
    ctx_.reset();
    cv_.notify_all();
  }

  // ---- test controls ----
  void set_fail_activate(bool fail) {
    std::lock_guard lock(mutex_);
    fail_activate_ = fail;
  }
  void set_complete_on_process(bool complete) {
    std::lock_guard lock(mutex_);
    complete_on_process_ = complete;
  }
  void set_config_generation(uint32_t generation) {
    std::lock_guard lock(mutex_);
    generation_ = generation;
  }
  // Runs `fn` with the interrupt of the current activation (nullptr when not active). Call
  // it on the event-loop thread (VirtioInterrupt's contract), e.g. through asio::post.
  void with_interrupt(const std::function<void(virtio::VirtioInterrupt*)>& fn) {
    virtio::VirtioInterrupt* irq = nullptr;
    {
      std::lock_guard lock(mutex_);
      irq = ctx_ ? ctx_->interrupt : nullptr;
    }
    fn(irq);
  }

  // ---- records ----
  std::vector<Activation> activations() const {
    std::lock_guard lock(mutex_);
    return activations_;
  }
  std::vector<uint16_t> processed() const {
    std::lock_guard lock(mutex_);
    return processed_;
  }
  int resets() const {
    std::lock_guard lock(mutex_);
    return resets_;
  }
  bool active() const {
    std::lock_guard lock(mutex_);
    return ctx_.has_value();
  }
  std::vector<ConfigAccess> config_accesses() const {
    std::lock_guard lock(mutex_);
    return config_accesses_;
  }
  std::vector<std::byte> config_bytes() const {
    std::lock_guard lock(mutex_);
    return config_;
  }

  // Waits until `pred(*this)` holds (checked after every recorded call), at most `timeout`.
  bool wait_for(const std::function<bool(const FakeVirtioDevice&)>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mutex_);
    while (true) {
      lock.unlock();
      bool done = pred(*this);
      lock.lock();
      if (done) {
        return true;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        lock.unlock();
        return pred(*this);
      }
    }
  }

 private:
  // mutex_ held. Errors from a broken ring end the loop (the fake does not set NEEDS_RESET).
  void complete_all(virtio::Virtqueue& vq, uint16_t index) {
    const GuestMemory& mem = *ctx_->memory;
    bool added = false;
    while (true) {
      auto chain = vq.pop(mem);
      if (!chain.ok() || !chain->has_value()) {
        break;
      }
      if (!vq.add_used(mem, (*chain)->head(), 0).ok()) {
        break;
      }
      added = true;
    }
    if (added) {
      auto notify = vq.should_notify(mem);
      if (notify.ok() && *notify && ctx_->interrupt) {
        ctx_->interrupt->notify_queue(index);
      }
    }
  }

  uint32_t type_;
  std::vector<uint16_t> max_sizes_;
  uint64_t features_;

  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::vector<std::byte> config_;
  uint32_t generation_ = 0;
  bool fail_activate_ = false;
  bool complete_on_process_ = false;
  std::optional<virtio::ActivateContext> ctx_;
  std::vector<Activation> activations_;
  std::vector<uint16_t> processed_;
  int resets_ = 0;
  mutable std::vector<ConfigAccess> config_accesses_;
};

}  // namespace petrel::testing
