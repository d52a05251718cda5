// TransportCore: quiesce, save and restore (transport_core.h has the contracts).
//
// Encoding (StateWriter, little-endian), inside the owner's versioned blob:
//   u8 status, u32 device_features_select, u32 driver_features_select, u64 driver_features,
//   u8 driver_unknown_features, u32 queue_select, u32 isr, u32 queue count, per queue
//   { u32 size, u8 ready, u8 size_refused, u64 desc, u64 driver, u64 device, u8 has_indices
//   [, u32 next_avail, u32 next_used] }, bytes device_state.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "virtio/transport_core.h"
#include "virtio/virtio_spec.h"

namespace petrel::virtio {

namespace {

constexpr size_t kMaxDeviceState = 64 * 1024;
constexpr uint8_t kKnownStatus = kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk |
                                 kStatusDriverOk | kStatusDeviceNeedsReset | kStatusFailed;

Result<bool> read_bool(StateReader& in, std::string_view field) {
  PETREL_TRY_ASSIGN(uint8_t v, in.u8());
  if (v > 1) {
    return in.fail(fmt::format("{} is {}, not 0 or 1", field, v));
  }
  return v == 1;
}

Result<uint16_t> read_u16(StateReader& in, std::string_view field) {
  PETREL_TRY_ASSIGN(uint32_t v, in.u32());
  if (v > UINT16_MAX) {
    return in.fail(fmt::format("{} {} is not a 16-bit value", field, v));
  }
  return static_cast<uint16_t>(v);
}

}  // namespace

bool TransportCore::working(uint8_t status) {
  return (status & kStatusDriverOk) != 0 && (status & kStatusDeviceNeedsReset) == 0;
}

// --- quiesce ---

void TransportCore::quiesce(std::function<void()> idle) {
  quiesced_ = true;
  if (active_) {
    device_->quiesce(std::move(idle));
  } else {
    idle();
  }
}

void TransportCore::unquiesce() {
  if (!quiesced_.exchange(false)) {
    return;
  }
  if (active_) {
    device_->unquiesce();
  }
  for (uint16_t i = 0; i < kicked_.size(); ++i) {
    if (kicked_[i] && active_ && !stopped_) {
      device_->process_queue(i);
    }
    kicked_[i] = false;
  }
}

// --- save ---

Result<void> TransportCore::save_state(StateWriter& out) const {
  std::lock_guard lock(mutex_);
  const bool works = working(status_);
  std::vector<std::optional<QueueIndices>> indices;
  if (works) {
    if (!active_ || stopped_ || !quiesced_) {
      return Error(ErrorCode::kState,
                   "virtio transport: the device is not active and quiesced, cannot save it");
    }
    indices = device_->queue_indices();
  }
  out.u8(status_);
  out.u32(device_features_select_);
  out.u32(driver_features_select_);
  out.u64(driver_features_);
  out.u8(driver_unknown_features_ ? 1 : 0);
  out.u32(queue_select_);
  out.u32(isr_);
  out.u32(static_cast<uint32_t>(queues_.size()));
  for (size_t i = 0; i < queues_.size(); ++i) {
    const Queue& q = queues_[i];
    out.u32(q.size);
    out.u8(q.ready ? 1 : 0);
    out.u8(q.size_refused ? 1 : 0);
    out.u64(q.desc);
    out.u64(q.driver);
    out.u64(q.device);
    const bool has = works && q.ready;
    if (has && (i >= indices.size() || !indices[i])) {
      return Error(ErrorCode::kState,
                   fmt::format("virtio transport: the device reports no indices for ready "
                               "queue {}",
                               i));
    }
    out.u8(has ? 1 : 0);
    if (has) {
      out.u32(indices[i]->next_avail);
      out.u32(indices[i]->next_used);
    }
  }
  out.bytes(device_->save_state());
  return {};
}

// --- restore ---

Result<TransportCore::SavedState> TransportCore::parse_state(StateReader& in) const {
  SavedState s;
  PETREL_TRY_ASSIGN(s.status, in.u8());
  PETREL_TRY_ASSIGN(s.device_features_select, in.u32());
  PETREL_TRY_ASSIGN(s.driver_features_select, in.u32());
  PETREL_TRY_ASSIGN(s.driver_features, in.u64());
  PETREL_TRY_ASSIGN(s.driver_unknown_features, read_bool(in, "driver_unknown_features"));
  PETREL_TRY_ASSIGN(s.queue_select, in.u32());
  PETREL_TRY_ASSIGN(s.isr, in.u32());
  PETREL_TRY_ASSIGN(uint32_t count, in.u32());

  // 2.1 / 3.1.1: the status bits are set in order; FEATURES_OK only for offered features.
  if ((s.status & ~kKnownStatus) != 0) {
    return in.fail(fmt::format("status {:#x} has unknown bits", s.status));
  }
  const auto has = [&s](uint8_t bit) { return (s.status & bit) != 0; };
  if ((has(kStatusDriver) && !has(kStatusAcknowledge)) ||
      (has(kStatusFeaturesOk) && !has(kStatusDriver)) ||
      (has(kStatusDriverOk) && !has(kStatusFeaturesOk))) {
    return in.fail(fmt::format("status {:#x} has its bits out of order", s.status));
  }
  if (has(kStatusFeaturesOk)) {
    if ((s.driver_features & ~offered_) != 0 || s.driver_unknown_features) {
      return in.fail(fmt::format("driver features {:#x} accept bits not offered ({:#x})",
                                 s.driver_features, offered_));
    }
    if ((s.driver_features & feature_bit(kFVersion1)) == 0) {
      return in.fail("driver features lack VERSION_1 with FEATURES_OK set");
    }
  }
  if ((s.isr & ~(kInterruptUsedBuffer | kInterruptConfigChange)) != 0) {
    return in.fail(fmt::format("ISR {:#x} has unknown bits", s.isr));
  }
  if (count != queues_.size()) {
    return in.fail(fmt::format("{} queues, the device has {}", count, queues_.size()));
  }
  const bool works = working(s.status);
  const uint64_t features = s.driver_features & offered_;
  const bool event_idx = (features & feature_bit(kFEventIdx)) != 0;
  const bool indirect = (features & feature_bit(kFIndirectDesc)) != 0;
  for (uint32_t i = 0; i < count; ++i) {
    SavedQueue q;
    const std::string name = fmt::format("queue {}", i);
    PETREL_TRY_ASSIGN(q.size, read_u16(in, name + " size"));
    PETREL_TRY_ASSIGN(q.ready, read_bool(in, name + " ready"));
    PETREL_TRY_ASSIGN(q.size_refused, read_bool(in, name + " size_refused"));
    PETREL_TRY_ASSIGN(q.desc, in.u64());
    PETREL_TRY_ASSIGN(q.driver, in.u64());
    PETREL_TRY_ASSIGN(q.device, in.u64());
    PETREL_TRY_ASSIGN(bool has_indices, read_bool(in, name + " has_indices"));
    if (has_indices) {
      QueueIndices idx;
      PETREL_TRY_ASSIGN(idx.next_avail, read_u16(in, name + " next_avail"));
      PETREL_TRY_ASSIGN(idx.next_used, read_u16(in, name + " next_used"));
      q.indices = idx;
    }
    const uint16_t max = queues_[i].max_size;
    if (q.size == 0 || q.size > max) {
      return in.fail(fmt::format("{} size {} is outside 1..{}", name, q.size, max));
    }
    if (has_indices != (works && q.ready)) {
      return in.fail(
          fmt::format("{} {} indices for its state", name, has_indices ? "has" : "lacks"));
    }
    if (q.ready && !q.size_refused) {
      QueueLayout layout{.size = q.size,
                         .desc = GuestAddress(q.desc),
                         .avail = GuestAddress(q.driver),
                         .used = GuestAddress(q.device)};
      if (auto vq = Virtqueue::create(memory_, layout, max, event_idx, indirect); !vq) {
        return in.fail(fmt::format("{} unusable: {}", name, vq.error().to_string()));
      }
    } else if (works && q.ready) {
      return in.fail(fmt::format("{} is active with a refused size", name));
    }
    if (q.indices && static_cast<uint16_t>(q.indices->next_avail - q.indices->next_used) > q.size) {
      return in.fail(fmt::format("{} next_avail {} and next_used {} are more than {} apart", name,
                                 q.indices->next_avail, q.indices->next_used, q.size));
    }
    s.queues.push_back(q);
  }
  PETREL_TRY_ASSIGN(auto device_state, in.bytes(kMaxDeviceState));
  s.device_state.assign(device_state.begin(), device_state.end());
  return s;
}

Result<void> TransportCore::apply_state(SavedState s) {
  if (s.queues.size() != queues_.size()) {
    return Error(ErrorCode::kInternal, "virtio transport: state from another device");
  }
  PETREL_TRY(device_->restore_state(s.device_state));
  std::optional<ActivateContext> activation;
  uint64_t epoch = 0;
  {
    std::lock_guard lock(mutex_);
    status_ = s.status;
    device_features_select_ = s.device_features_select;
    driver_features_select_ = s.driver_features_select;
    driver_features_ = s.driver_features;
    driver_unknown_features_ = s.driver_unknown_features;
    queue_select_ = s.queue_select;
    isr_ = s.isr;
    for (size_t i = 0; i < queues_.size(); ++i) {
      Queue& q = queues_[i];
      const SavedQueue& saved = s.queues[i];
      q.size = saved.size;
      q.ready = saved.ready;
      q.size_refused = saved.size_refused;
      q.desc = saved.desc;
      q.driver = saved.driver;
      q.device = saved.device;
    }
    epoch = epoch_;
    if (working(status_)) {
      // The DRIVER_OK path; parse_state checked every layout, so this cannot fail (if it
      // did, the device would restore as DEVICE_NEEDS_RESET).
      activation = ActivateContext{};
      if (activate_locked_into(*activation)) {
        for (size_t i = 0; i < queues_.size(); ++i) {
          if (activation->queues[i] && s.queues[i].indices) {
            activation->queues[i]->set_indices(s.queues[i].indices->next_avail,
                                               s.queues[i].indices->next_used);
          }
        }
      } else {
        activation.reset();
      }
    }
  }
  if (activation) {
    std::weak_ptr<bool> alive = alive_;
    boost::asio::post(io_, [this, alive, epoch, ctx = std::move(*activation)]() mutable {
      if (!alive.expired()) {
        run_restored_activation(epoch, std::move(ctx));
      }
    });
  }
  return {};
}

void TransportCore::run_restored_activation(uint64_t epoch, ActivateContext ctx) {
  std::vector<uint16_t> ready;
  for (size_t i = 0; i < ctx.queues.size(); ++i) {
    if (ctx.queues[i]) {
      ready.push_back(static_cast<uint16_t>(i));
    }
  }
  run_activation(epoch, std::move(ctx));
  if (!active_ || stopped_) {
    return;
  }
  for (uint16_t i : ready) {
    if (!quiesced_) {
      device_->process_queue(i);
    }
  }
  for (uint16_t i : ready) {
    {
      std::lock_guard lock(mutex_);
      if (epoch != epoch_) {
        return;
      }
      isr_ |= kInterruptUsedBuffer;
    }
    deliver_(InterruptKind::kQueue, i);
  }
}

}  // namespace petrel::virtio
