// DeviceErrorReporter: forwards one device's error reports to the VM's error sink, at most
// kMaxReports of them and then a single "further errors suppressed", so that a guest that
// keeps breaking its rings or failing requests cannot flood the sink (the event stream and
// the log behind it). The count is for the reporter's life (one boot of the device).
//
// Thread affinity: report() on the event-loop thread only (virtio device callbacks).
#pragma once

#include <functional>
#include <string>

namespace petrel {

// (device id such as "disk0", message). Set before devices start; may be empty.
using DeviceErrorSink = std::function<void(std::string device, std::string message)>;

class DeviceErrorReporter {
 public:
  static constexpr unsigned kMaxReports = 10;

  // `sink` is read at each report, so it may be set after construction; it outlives this.
  DeviceErrorReporter(std::string device, const DeviceErrorSink* sink)
      : device_(std::move(device)), sink_(sink) {}

  void report(std::string message);
  unsigned reported() const { return reported_; }

 private:
  std::string device_;
  const DeviceErrorSink* sink_;
  unsigned reported_ = 0;  // reports seen, suppressed ones included (saturates)
};

}  // namespace petrel
