#include "vmm/base/event_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace petrel {

Result<EventFd> EventFd::create(int flags) {
  int fd = ::eventfd(0, flags | EFD_CLOEXEC);
  if (fd < 0) {
    return Error::from_errno("eventfd", errno);
  }
  return EventFd(UniqueFd(fd));
}

Result<void> EventFd::signal(uint64_t count) const {
  if (::write(fd_.get(), &count, sizeof(count)) != sizeof(count)) {
    return Error::from_errno("eventfd write", errno);
  }
  return {};
}

Result<uint64_t> EventFd::consume() const {
  uint64_t value = 0;
  if (::read(fd_.get(), &value, sizeof(value)) != sizeof(value)) {
    if (errno == EAGAIN) {
      return uint64_t{0};
    }
    return Error::from_errno("eventfd read", errno);
  }
  return value;
}

}  // namespace petrel
