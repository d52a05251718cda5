#include "vmm/host_rss.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>

#include "vmm/base/unique_fd.h"

namespace petrel {

Result<uint64_t> parse_statm_rss(std::string_view statm, uint64_t page_size) {
  // "size resident shared text lib data dt"
  const size_t first_space = statm.find(' ');
  if (first_space == std::string_view::npos) {
    return Error(ErrorCode::kIo, "/proc/self/statm: unexpected format");
  }
  std::string_view rest = statm.substr(first_space + 1);
  uint64_t pages = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pages);
  if (ec != std::errc() || end == rest.data() || pages > UINT64_MAX / page_size) {
    return Error(ErrorCode::kIo, "/proc/self/statm: unexpected format");
  }
  return pages * page_size;
}

Result<uint64_t> host_rss_bytes() {
  UniqueFd fd(::open("/proc/self/statm", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::from_errno("open /proc/self/statm", errno);
  }
  std::array<char, 256> buf{};
  ssize_t n = 0;
  do {
    n = ::read(fd.get(), buf.data(), buf.size() - 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return Error::from_errno("read /proc/self/statm", errno);
  }
  const long page = ::sysconf(_SC_PAGESIZE);
  return parse_statm_rss(std::string_view(buf.data(), static_cast<size_t>(n)),
                         page > 0 ? static_cast<uint64_t>(page) : 4096);
}

}  // namespace petrel
