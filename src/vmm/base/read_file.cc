#include "vmm/base/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "vmm/base/unique_fd.h"

namespace petrel {

Result<std::vector<std::byte>> read_file(const std::filesystem::path& path, uint64_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::from_errno(path.string(), errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) {
    return Error::from_errno(path.string(), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{}: not a regular file", path.string()));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("{}: {} bytes is larger than guest memory ({} bytes)", path.string(),
                             st.st_size, max_bytes));
  }
  std::vector<std::byte> data(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n == 0 ? Error(ErrorCode::kIo,
                            fmt::format("{}: file shrank while reading", path.string()))
                    : Error::from_errno(path.string(), errno);
    }
    done += static_cast<size_t>(n);
  }
  return data;
}

}  // namespace petrel
