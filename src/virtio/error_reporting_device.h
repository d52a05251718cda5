// ErrorReportingDevice: a VirtioDevice decorator that tells someone when the device it wraps
// moves to DEVICE_NEEDS_RESET (it calls VirtioInterrupt::set_needs_reset, e.g. on a ring
// the driver broke) or fails its activation (the transport then sets DEVICE_NEEDS_RESET).
// Everything else is forwarded unchanged; the transport sees the decorator as the device.
//
// Both causes are guest-triggerable and repeatable (a driver can break its ring, reset and
// break it again): the receiver of the reports must rate-limit.
//
// Thread affinity: as VirtioDevice; `report` is called on the event-loop thread (where
// activate and set_needs_reset run).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "virtio/virtio_device.h"

namespace petrel::virtio {

class ErrorReportingDevice final : public VirtioDevice {
 public:
  using Report = std::function<void(std::string message)>;

  ErrorReportingDevice(std::shared_ptr<VirtioDevice> inner, Report report);
  ErrorReportingDevice(const ErrorReportingDevice&) = delete;
  ErrorReportingDevice& operator=(const ErrorReportingDevice&) = delete;

  uint32_t device_type() const override { return inner_->device_type(); }
  std::vector<uint16_t> queue_max_sizes() const override { return inner_->queue_max_sizes(); }
  uint64_t device_features() const override { return inner_->device_features(); }
  void read_config(uint64_t offset, std::span<std::byte> data) const override {
    inner_->read_config(offset, data);
  }
  void write_config(uint64_t offset, std::span<const std::byte> data) override {
    inner_->write_config(offset, data);
  }
  uint32_t config_generation() const override { return inner_->config_generation(); }
  Result<void> activate(ActivateContext ctx) override;
  void process_queue(uint16_t index) override { inner_->process_queue(index); }
  void reset() override;
  void quiesce(std::function<void()> idle) override { inner_->quiesce(std::move(idle)); }
  void unquiesce() override { inner_->unquiesce(); }
  std::vector<std::optional<QueueIndices>> queue_indices() const override {
    return inner_->queue_indices();
  }
  std::vector<std::byte> save_state() const override { return inner_->save_state(); }
  Result<void> restore_state(std::span<const std::byte> state) override {
    return inner_->restore_state(state);
  }

  const std::shared_ptr<VirtioDevice>& inner() const { return inner_; }

 private:
  // Stands between the device and the transport's interrupt during an activation.
  class Relay final : public VirtioInterrupt {
   public:
    explicit Relay(ErrorReportingDevice& owner) : owner_(owner) {}
    void notify_queue(uint16_t index) override;
    void notify_config() override;
    void set_needs_reset() override;

    VirtioInterrupt* target = nullptr;  // the transport's; loop thread

   private:
    ErrorReportingDevice& owner_;
  };

  std::shared_ptr<VirtioDevice> inner_;
  Report report_;
  Relay relay_{*this};
};

}  // namespace petrel::virtio
