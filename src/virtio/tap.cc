#include "virtio/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "virtio/net_spec.h"

namespace petrel::virtio {

namespace {

constexpr uint16_t kMinMtu = 68;  // RFC 791; 5.1.4.1 bounds mtu to 68..65535

unsigned tun_flags(const NetOffloads& o) {
  unsigned flags = 0;
  flags |= o.csum ? TUN_F_CSUM : 0;
  flags |= o.tso4 ? TUN_F_TSO4 : 0;
  flags |= o.tso6 ? TUN_F_TSO6 : 0;
  flags |= o.tso_ecn ? TUN_F_TSO_ECN : 0;
  flags |= o.ufo ? TUN_F_UFO : 0;
  return flags;
}

ifreq make_ifreq(const std::string& name) {
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), std::min(name.size(), size_t{IFNAMSIZ - 1}));
  return ifr;
}

// An ioctl on the interface through a throw-away socket (SIOC*IF* need one, any family).
Result<void> interface_ioctl(unsigned long request, ifreq& ifr, std::string_view what) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) {
    return Error::from_errno("socket for interface ioctl", errno);
  }
  if (::ioctl(sock.get(), request, &ifr) < 0) {
    return Error::from_errno(fmt::format("{} on {}", what, ifr.ifr_name), errno);
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Tap>> Tap::open(const TapOptions& options) {
  if (options.name.size() >= IFNAMSIZ) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("TAP name '{}' is longer than {} characters", options.name, IFNAMSIZ - 1));
  }
  if (options.mtu && *options.mtu < kMinMtu) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("MTU {} is below the minimum {}", *options.mtu, kMinMtu));
  }
  const bool existed = !options.name.empty() && ::if_nametoindex(options.name.c_str()) != 0;
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::from_errno("open /dev/net/tun", errno);
  }
  ifreq ifr = make_ifreq(options.name.empty() ? std::string("ptap%d") : options.name);
  // Multi-queue, so that a second petrel (a migration's destination on this host) can
  // attach while the source still holds its queue. A TAP created single-queue by someone
  // else refuses IFF_MULTI_QUEUE (EINVAL): then attach as it is.
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    const int mq_err = errno;
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (mq_err != EINVAL || ::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
      return Error::from_errno(fmt::format("TUNSETIFF {}", ifr.ifr_name),
                               mq_err != EINVAL ? mq_err : errno);
    }
  }
  std::string name(ifr.ifr_name, ::strnlen(ifr.ifr_name, IFNAMSIZ));
  int hdr_size = static_cast<int>(net::kHdrSize);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr_size) < 0) {
    return Error::from_errno(fmt::format("TUNSETVNETHDRSZ {} on {}", hdr_size, name), errno);
  }
  auto tap = std::make_unique<Tap>(Key{}, std::move(fd), std::move(name), !existed);
  PETREL_TRY(tap->probe_offloads());
  if (options.mtu) {
    PETREL_TRY(tap->set_mtu(*options.mtu));
  }
  if (tap->created_) {
    PETREL_TRY(tap->bring_up());
  }
  return tap;
}

Result<void> Tap::probe_offloads() {
  auto accepts = [&](unsigned flags) { return ::ioctl(fd_.get(), TUNSETOFFLOAD, flags) == 0; };
  supported_.csum = accepts(TUN_F_CSUM);
  // The kernel refuses TSO without checksum offload.
  supported_.tso4 = supported_.csum && accepts(TUN_F_CSUM | TUN_F_TSO4);
  supported_.tso6 = supported_.csum && accepts(TUN_F_CSUM | TUN_F_TSO6);
  supported_.tso_ecn = (supported_.tso4 || supported_.tso6) &&
                       accepts(TUN_F_CSUM | (supported_.tso4 ? TUN_F_TSO4 : 0) |
                               (supported_.tso6 ? TUN_F_TSO6 : 0) | TUN_F_TSO_ECN);
  supported_.ufo = supported_.csum && accepts(TUN_F_CSUM | TUN_F_UFO);
  return set_offloads(NetOffloads{});
}

Result<void> Tap::set_offloads(const NetOffloads& offloads) {
  const unsigned flags = tun_flags(offloads);
  if ((flags & ~tun_flags(supported_)) != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("offloads {:#x} not supported by TAP {}", flags, name_));
  }
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, flags) < 0) {
    return Error::from_errno(fmt::format("TUNSETOFFLOAD {:#x} on {}", flags, name_), errno);
  }
  return {};
}

Result<void> Tap::set_mtu(uint16_t mtu) {
  ifreq ifr = make_ifreq(name_);
  ifr.ifr_mtu = mtu;
  return interface_ioctl(SIOCSIFMTU, ifr, fmt::format("SIOCSIFMTU {}", mtu));
}

Result<void> Tap::bring_up() {
  ifreq ifr = make_ifreq(name_);
  PETREL_TRY(interface_ioctl(SIOCGIFFLAGS, ifr, "SIOCGIFFLAGS"));
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  return interface_ioctl(SIOCSIFFLAGS, ifr, "SIOCSIFFLAGS IFF_UP");
}

Result<std::optional<size_t>> Tap::read_frame(std::span<const iovec> iov) {
  for (;;) {
    ssize_t n = ::readv(fd_.get(), iov.data(), static_cast<int>(iov.size()));
    if (n >= 0) {
      return std::optional<size_t>(static_cast<size_t>(n));
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN) {
      return std::optional<size_t>();
    }
    return Error::from_errno(fmt::format("read from TAP {}", name_), errno);
  }
}

Result<std::optional<size_t>> Tap::write_frame(std::span<const iovec> iov) {
  for (;;) {
    ssize_t n = ::writev(fd_.get(), iov.data(), static_cast<int>(iov.size()));
    if (n >= 0) {
      return std::optional<size_t>(static_cast<size_t>(n));
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN) {
      return std::optional<size_t>();
    }
    return Error::from_errno(fmt::format("write to TAP {}", name_), errno);
  }
}

}  // namespace petrel::virtio
