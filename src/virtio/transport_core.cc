#include "virtio/transport_core.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "virtio/virtio_spec.h"

namespace petrel::virtio {

namespace {

bool valid_max_size(uint16_t size) {
  return size != 0 && size <= kMaxQueueSize && (size & (size - 1)) == 0;
}

}  // namespace

Result<std::unique_ptr<TransportCore>> TransportCore::create(boost::asio::io_context& io,
                                                             const GuestMemory& memory,
                                                             std::shared_ptr<VirtioDevice> device,
                                                             Deliver deliver) {
  if (!device || !deliver) {
    return Error(ErrorCode::kInternal, "virtio transport needs a device and a delivery");
  }
  auto core = std::make_unique<TransportCore>(io, memory, std::move(device), std::move(deliver));
  PETREL_TRY(core->init_queues());
  std::weak_ptr<bool> alive = core->alive_;
  TransportCore* self = core.get();
  boost::asio::post(io, [self, alive] {
    if (alive.expired() || self->stopped_) {
      return;
    }
    for (uint16_t i = 0; i < self->num_queues(); ++i) {
      self->arm_kick(i);
    }
  });
  return core;
}

TransportCore::TransportCore(boost::asio::io_context& io, const GuestMemory& memory,
                             std::shared_ptr<VirtioDevice> device, Deliver deliver)
    : io_(io),
      memory_(memory),
      device_(std::move(device)),
      deliver_(std::move(deliver)),
      offered_(device_->device_features() | feature_bit(kFVersion1) | feature_bit(kFIndirectDesc) |
               feature_bit(kFEventIdx)) {}

TransportCore::~TransportCore() {
  if (!stopped_) {
    stop_on_loop();
  }
  alive_.reset();
}

Result<void> TransportCore::init_queues() {
  std::vector<uint16_t> sizes = device_->queue_max_sizes();
  if (sizes.size() > UINT16_MAX) {
    return Error(ErrorCode::kInternal, fmt::format("virtio device has {} queues", sizes.size()));
  }
  queues_.reserve(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!valid_max_size(sizes[i])) {
      return Error(ErrorCode::kInternal,
                   fmt::format("virtio queue {} has invalid maximum size {}", i, sizes[i]));
    }
    PETREL_TRY_ASSIGN(EventFd kick, EventFd::create(EFD_NONBLOCK));
    int dup = ::fcntl(kick.fd(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      return Error::from_errno("dup kick eventfd", errno);
    }
    auto waiter = std::make_unique<boost::asio::posix::stream_descriptor>(io_, dup);
    queues_.push_back(Queue{.max_size = sizes[i],
                            .size = sizes[i],
                            .kick = std::move(kick),
                            .waiter = std::move(waiter)});
  }
  kicked_.assign(queues_.size(), false);
  return {};
}

TransportCore::Queue* TransportCore::selected_queue() {
  return queue_select_ < queues_.size() ? &queues_[queue_select_] : nullptr;
}

const TransportCore::Queue* TransportCore::selected_queue() const {
  return queue_select_ < queues_.size() ? &queues_[queue_select_] : nullptr;
}

TransportCore::Queue* TransportCore::writable_queue(const char* what) {
  Queue* q = selected_queue();
  if (!q || (status_ & kStatusDriverOk) != 0) {
    spdlog::debug("virtio: queue {} write ignored (queue {}, status {:#x})", what, queue_select_,
                  status_);
    return nullptr;
  }
  return q;
}

uint64_t& TransportCore::area_ref(Queue& q, QueueArea area) {
  switch (area) {
    case QueueArea::kDesc:
      return q.desc;
    case QueueArea::kDriver:
      return q.driver;
    case QueueArea::kDevice:
      break;
  }
  return q.device;
}

uint64_t TransportCore::area_value(const Queue& q, QueueArea area) {
  switch (area) {
    case QueueArea::kDesc:
      return q.desc;
    case QueueArea::kDriver:
      return q.driver;
    case QueueArea::kDevice:
      break;
  }
  return q.device;
}

// --- 2.2 feature bits ---

void TransportCore::set_device_features_select(uint32_t select) {
  std::lock_guard lock(mutex_);
  device_features_select_ = select;
}

uint32_t TransportCore::device_features_select() const {
  std::lock_guard lock(mutex_);
  return device_features_select_;
}

uint32_t TransportCore::device_features_word() const {
  std::lock_guard lock(mutex_);
  if (device_features_select_ > 1) {
    return 0;
  }
  return static_cast<uint32_t>(offered_ >> (32 * device_features_select_));
}

void TransportCore::set_driver_features_select(uint32_t select) {
  std::lock_guard lock(mutex_);
  driver_features_select_ = select;
}

uint32_t TransportCore::driver_features_select() const {
  std::lock_guard lock(mutex_);
  return driver_features_select_;
}

void TransportCore::set_driver_features_word(uint32_t value) {
  std::lock_guard lock(mutex_);
  if ((status_ & kStatusFeaturesOk) != 0 || (status_ & kStatusFailed) != 0) {
    spdlog::debug("virtio: driver features written after FEATURES_OK, ignored");
    return;
  }
  if (driver_features_select_ > 1) {
    driver_unknown_features_ = driver_unknown_features_ || value != 0;
    return;
  }
  unsigned shift = 32 * driver_features_select_;
  driver_features_ =
      (driver_features_ & ~(uint64_t{0xffffffff} << shift)) | (uint64_t{value} << shift);
}

uint32_t TransportCore::driver_features_word() const {
  std::lock_guard lock(mutex_);
  if (driver_features_select_ > 1) {
    return 0;
  }
  return static_cast<uint32_t>(driver_features_ >> (32 * driver_features_select_));
}

uint64_t TransportCore::driver_features() const {
  std::lock_guard lock(mutex_);
  return driver_features_;
}

// --- 2.1 / 3.1.1 device status ---

uint8_t TransportCore::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void TransportCore::write_status(uint8_t value) {
  if (value == 0) {
    reset();
    return;
  }
  std::optional<ActivateContext> activation;
  bool activation_failed = false;
  uint64_t epoch = 0;
  {
    std::lock_guard lock(mutex_);
    epoch = epoch_;
    if ((status_ & kStatusFailed) != 0) {
      spdlog::debug("virtio: status {:#x} written after FAILED, ignored", value);
      return;
    }
    const uint8_t current = status_ & ~kStatusDeviceNeedsReset;
    const uint8_t requested = value & ~kStatusDeviceNeedsReset;
    if ((requested & current) != current) {
      spdlog::debug("virtio: driver cleared status bits ({:#x} -> {:#x}), ignored", current,
                    requested);
      return;
    }
    const uint8_t added = requested & ~current;
    if ((added & kStatusFailed) != 0) {
      status_ |= kStatusFailed;
      return;
    }
    struct Step {
      uint8_t bit;
      uint8_t needs;
    };
    constexpr Step kSteps[] = {{kStatusAcknowledge, 0},
                               {kStatusDriver, kStatusAcknowledge},
                               {kStatusFeaturesOk, kStatusDriver},
                               {kStatusDriverOk, kStatusFeaturesOk}};
    for (const Step& step : kSteps) {
      if ((added & step.bit) == 0) {
        continue;
      }
      if ((status_ & step.needs) != step.needs) {
        spdlog::debug("virtio: status bit {:#x} before {:#x}, refused", step.bit, step.needs);
        break;
      }
      if (step.bit == kStatusFeaturesOk && !accept_features()) {
        break;
      }
      if (step.bit == kStatusDriverOk) {
        status_ |= kStatusDriverOk;
        activation = ActivateContext{};
        if (!activate_locked_into(*activation)) {
          activation.reset();
          activation_failed = true;
        }
        break;
      }
      status_ |= step.bit;
    }
  }
  std::weak_ptr<bool> alive = alive_;
  if (activation_failed) {
    boost::asio::post(io_, [this, alive, epoch] {
      if (!alive.expired()) {
        deliver_if_current(InterruptKind::kConfig, 0, epoch);
      }
    });
  } else if (activation) {
    boost::asio::post(io_, [this, alive, epoch, ctx = std::move(*activation)]() mutable {
      if (!alive.expired()) {
        run_activation(epoch, std::move(ctx));
      }
    });
  }
}

void TransportCore::run_activation(uint64_t epoch, ActivateContext ctx) {
  if (stopped_) {
    return;
  }
  {
    std::lock_guard lock(mutex_);
    if (epoch != epoch_) {
      return;  // the driver reset the device before the activation ran
    }
  }
  activated_ = true;
  active_epoch_ = epoch;
  Result<void> r = device_->activate(std::move(ctx));
  if (r) {
    active_ = true;
    return;
  }
  spdlog::warn("virtio device type {}: activation failed: {}", device_type(),
               r.error().to_string());
  {
    std::lock_guard lock(mutex_);
    if (epoch != epoch_) {
      return;
    }
    status_ |= kStatusDeviceNeedsReset;
    isr_ |= kInterruptConfigChange;
  }
  deliver_(InterruptKind::kConfig, 0);
}

bool TransportCore::accept_features() {
  if (driver_unknown_features_ || (driver_features_ & ~offered_) != 0) {
    spdlog::debug("virtio: driver accepted unoffered features {:#x}, FEATURES_OK refused",
                  driver_features_ & ~offered_);
    return false;
  }
  if ((driver_features_ & feature_bit(kFVersion1)) == 0) {
    spdlog::debug("virtio: driver did not accept VERSION_1, FEATURES_OK refused");
    return false;
  }
  return true;
}

bool TransportCore::activate_locked_into(ActivateContext& ctx) {
  ctx.memory = &memory_;
  ctx.features = driver_features_ & offered_;
  ctx.interrupt = this;
  ctx.io = &io_;
  const bool event_idx = (ctx.features & feature_bit(kFEventIdx)) != 0;
  const bool indirect = (ctx.features & feature_bit(kFIndirectDesc)) != 0;
  bool ok = true;
  for (size_t i = 0; i < queues_.size() && ok; ++i) {
    const Queue& q = queues_[i];
    if (!q.ready) {
      ctx.queues.emplace_back(std::nullopt);
      continue;
    }
    if (q.size_refused) {
      spdlog::warn("virtio device type {}: queue {} was given an invalid size",
                   device_->device_type(), i);
      ok = false;
      break;
    }
    QueueLayout layout{.size = q.size,
                       .desc = GuestAddress(q.desc),
                       .avail = GuestAddress(q.driver),
                       .used = GuestAddress(q.device)};
    auto vq = Virtqueue::create(memory_, layout, q.max_size, event_idx, indirect);
    if (!vq) {
      spdlog::warn("virtio device type {}: queue {} unusable: {}", device_->device_type(), i,
                   vq.error().to_string());
      ok = false;
      break;
    }
    ctx.queues.emplace_back(std::move(vq).value());
  }
  if (!ok) {
    status_ |= kStatusDeviceNeedsReset;
    isr_ |= kInterruptConfigChange;
    return false;
  }
  activation_posted_ = true;
  return true;
}

void TransportCore::reset_registers() {
  status_ = 0;
  device_features_select_ = 0;
  driver_features_select_ = 0;
  driver_features_ = 0;
  driver_unknown_features_ = false;
  queue_select_ = 0;
  isr_ = 0;
  for (Queue& q : queues_) {
    q.size = q.max_size;
    q.size_refused = false;
    q.ready = false;
    q.desc = q.driver = q.device = 0;
  }
}

void TransportCore::reset() {
  bool device_reset = false;
  {
    std::lock_guard lock(mutex_);
    device_reset = activation_posted_;
    activation_posted_ = false;
    reset_registers();
    ++epoch_;
  }
  if (device_reset) {
    run_on_loop([this] {
      if (activated_) {
        device_->reset();
        activated_ = false;
        active_ = false;
      }
    });
  }
}

// --- ISR and config ---

uint32_t TransportCore::interrupt_status() const {
  std::lock_guard lock(mutex_);
  return isr_;
}

void TransportCore::ack_interrupt(uint32_t bits) {
  std::lock_guard lock(mutex_);
  isr_ &= ~bits;
}

uint32_t TransportCore::take_interrupt_status() {
  std::lock_guard lock(mutex_);
  return std::exchange(isr_, 0);
}

void TransportCore::read_config(uint64_t offset, std::span<std::byte> data) const {
  device_->read_config(offset, data);
}

void TransportCore::write_config(uint64_t offset, std::span<const std::byte> data) {
  device_->write_config(offset, data);
}

}  // namespace petrel::virtio
