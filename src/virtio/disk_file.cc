#include "virtio/disk_file.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace petrel::virtio {
namespace {

constexpr uint64_t kZeroChunk = 1 << 20;
constexpr size_t kZeroAlign = 4096;  // enough for O_DIRECT on any logical block size <= 4 KiB

bool unsupported(int err) {
  return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS || err == EINVAL;
}

// Drops the first `done` bytes of `iov` (after a short transfer).
void advance_iov(std::vector<iovec>& iov, uint64_t done) {
  size_t drop = 0;
  while (drop < iov.size() && done >= iov[drop].iov_len) {
    done -= iov[drop].iov_len;
    ++drop;
  }
  iov.erase(iov.begin(), iov.begin() + static_cast<ptrdiff_t>(drop));
  if (!iov.empty() && done > 0) {
    iov[0].iov_base = static_cast<std::byte*>(iov[0].iov_base) + done;
    iov[0].iov_len -= done;
  }
}

int fallocate_range(int fd, int mode, uint64_t offset, uint64_t length) {
  while (::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
    if (errno != EINTR) {
      return errno;
    }
  }
  return 0;
}

}  // namespace

Result<void> DiskFile::set_locked(bool locked) const {
  if (read_only_) {
    return {};
  }
  if (!locked) {
    if (int err = flush(); err != 0) {
      return Error::from_errno(fmt::format("flushing disk image {}", path_.string()), err);
    }
  }
  if (::flock(fd_.get(), (locked ? LOCK_EX : LOCK_UN) | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      return Error(
          ErrorCode::kState,
          fmt::format("disk image {} was taken by another process meanwhile", path_.string()), err);
    }
    return Error::from_errno(fmt::format("flock disk image {}", path_.string()), err);
  }
  return {};
}

Result<DiskFile> DiskFile::open(const std::filesystem::path& path, bool read_only, bool direct) {
  int flags = O_CLOEXEC | (read_only ? O_RDONLY : O_RDWR) | (direct ? O_DIRECT : 0);
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd.valid()) {
    return Error::from_errno(fmt::format("open disk image {}", path.string()), errno);
  }
  if (::flock(fd.get(), (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      return Error(ErrorCode::kState,
                   fmt::format("disk image {} is in use by another process (it holds a "
                               "conflicting flock; another petrel?)",
                               path.string()),
                   err);
    }
    return Error::from_errno(fmt::format("flock disk image {}", path.string()), err);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Error::from_errno(fmt::format("stat disk image {}", path.string()), errno);
  }
  uint64_t size = 0;
  if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) {
      return Error::from_errno(fmt::format("BLKGETSIZE64 on {}", path.string()), errno);
    }
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
  } else {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("disk image {} is neither a regular file nor a block device", path.string()));
  }
  if (size % 512 != 0) {
    spdlog::warn(
        "disk image {}: size {} is not a multiple of 512; the last {} bytes are "
        "not visible to the guest",
        path.string(), size, size % 512);
  }
  return DiskFile(std::move(fd), size, read_only, path);
}

int DiskFile::read(std::span<const iovec> iov_in, uint64_t offset) const {
  std::vector<iovec> iov(iov_in.begin(), iov_in.end());
  while (!iov.empty()) {
    ssize_t n =
        ::preadv(fd_.get(), iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno;
    }
    if (n == 0) {
      return EIO;  // the image shrank under us
    }
    offset += static_cast<uint64_t>(n);
    advance_iov(iov, static_cast<uint64_t>(n));
  }
  return 0;
}

int DiskFile::write(std::span<const iovec> iov_in, uint64_t offset, bool dsync) const {
  std::vector<iovec> iov(iov_in.begin(), iov_in.end());
  while (!iov.empty()) {
    ssize_t n = ::pwritev2(fd_.get(), iov.data(), static_cast<int>(iov.size()),
                           static_cast<off_t>(offset), dsync ? RWF_DSYNC : 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno;
    }
    if (n == 0) {
      return EIO;
    }
    offset += static_cast<uint64_t>(n);
    advance_iov(iov, static_cast<uint64_t>(n));
  }
  return 0;
}

int DiskFile::flush() const {
  while (::fdatasync(fd_.get()) != 0) {
    if (errno != EINTR) {
      return errno;
    }
  }
  return 0;
}

int DiskFile::discard(uint64_t offset, uint64_t length) const {
  int err = fallocate_range(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  return unsupported(err) ? 0 : err;
}

int DiskFile::write_zeroes(uint64_t offset, uint64_t length, bool unmap) const {
  int err = EOPNOTSUPP;
  if (unmap) {
    err = fallocate_range(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  }
  if (unsupported(err)) {
    err = fallocate_range(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
  }
  if (unsupported(err)) {
    err = write_zero_bytes(offset, length);
  }
  return err;
}

int DiskFile::write_zero_bytes(uint64_t offset, uint64_t length) const {
  uint64_t chunk = std::min(length, kZeroChunk);
  chunk = (chunk + kZeroAlign - 1) / kZeroAlign * kZeroAlign;
  std::unique_ptr<void, decltype(&std::free)> zeros(std::aligned_alloc(kZeroAlign, chunk),
                                                    &std::free);
  if (!zeros) {
    return ENOMEM;
  }
  std::memset(zeros.get(), 0, chunk);
  while (length > 0) {
    uint64_t n = std::min(length, chunk);
    iovec iov{zeros.get(), n};
    int err = write(std::span(&iov, 1), offset, false);
    if (err != 0) {
      return err;
    }
    offset += n;
    length -= n;
  }
  return 0;
}

}  // namespace petrel::virtio
