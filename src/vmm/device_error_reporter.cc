#include "vmm/device_error_reporter.h"

#include <spdlog/spdlog.h>

namespace petrel {

void DeviceErrorReporter::report(std::string message) {
  if (reported_ > kMaxReports) {
    return;
  }
  ++reported_;
  if (reported_ == kMaxReports + 1) {
    message = "further errors suppressed";
    spdlog::warn("{}: more than {} errors, further errors suppressed", device_, kMaxReports);
  }
  if (sink_ != nullptr && *sink_) {
    (*sink_)(device_, std::move(message));
  }
}

}  // namespace petrel
