// EventFd: an eventfd(2) counter, used for ioeventfd/irqfd and cross-thread wake-ups.
// signal() and consume() may be called from any thread.
#pragma once

#include <cstdint>

#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

class EventFd {
 public:
  // flags: EFD_NONBLOCK and/or EFD_CLOEXEC (EFD_CLOEXEC is always added).
  static Result<EventFd> create(int flags = 0);

  Result<void> signal(uint64_t count = 1) const;
  // Reads and resets the counter. With EFD_NONBLOCK and a zero counter returns 0.
  Result<uint64_t> consume() const;
  int fd() const { return fd_.get(); }

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace petrel
