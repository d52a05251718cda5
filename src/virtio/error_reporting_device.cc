#include "virtio/error_reporting_device.h"

#include <utility>

namespace petrel::virtio {

ErrorReportingDevice::ErrorReportingDevice(std::shared_ptr<VirtioDevice> inner, Report report)
    : inner_(std::move(inner)), report_(std::move(report)) {}

Result<void> ErrorReportingDevice::activate(ActivateContext ctx) {
  relay_.target = ctx.interrupt;
  if (ctx.interrupt != nullptr) {
    ctx.interrupt = &relay_;
  }
  Result<void> r = inner_->activate(std::move(ctx));
  if (!r.ok() && report_) {
    report_("activation failed, the device needs a reset: " + r.error().to_string());
  }
  return r;
}

void ErrorReportingDevice::reset() {
  inner_->reset();
  relay_.target = nullptr;  // the transport's interrupt is valid only until reset() returns
}

void ErrorReportingDevice::Relay::notify_queue(uint16_t index) {
  if (target != nullptr) {
    target->notify_queue(index);
  }
}

void ErrorReportingDevice::Relay::notify_config() {
  if (target != nullptr) {
    target->notify_config();
  }
}

void ErrorReportingDevice::Relay::set_needs_reset() {
  if (target == nullptr) {
    return;
  }
  target->set_needs_reset();
  if (owner_.report_) {
    owner_.report_("the device stopped with DEVICE_NEEDS_RESET (a broken queue; see the log)");
  }
}

}  // namespace petrel::virtio
