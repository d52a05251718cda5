// Tap: a Linux TAP interface as a virtio-net backend (Documentation/networking/tuntap.rst).
//
// open() attaches to an existing TAP by name or creates one: TUNSETIFF with IFF_TAP |
// IFF_NO_PI | IFF_VNET_HDR, the descriptor non-blocking and close-on-exec, TUNSETVNETHDRSZ
// 12 (virtio_net_hdr with num_buffers, net_spec.h), the offloads the kernel accepts probed
// with TUNSETOFFLOAD (then all off until the guest negotiates them), the MTU set with
// SIOCSIFMTU when configured, and the link brought up (SIOCSIFFLAGS IFF_UP) when petrel
// created the interface. An interface petrel created disappears when the Tap is destroyed.
// Needs CAP_NET_ADMIN (or a persistent TAP owned by the user).
//
// Thread affinity: used by one device on the VMM event-loop thread.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "virtio/net_backend.h"
#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel::virtio {

struct TapOptions {
  std::string name;             // empty: the kernel picks "ptap<N>"; at most 15 characters
  std::optional<uint16_t> mtu;  // bytes, 68..65535
};

class Tap final : public NetBackend {
  struct Key {};  // only open() constructs

 public:
  static Result<std::unique_ptr<Tap>> open(const TapOptions& options);
  Tap(Key, UniqueFd fd, std::string name, bool created)
      : fd_(std::move(fd)), name_(std::move(name)), created_(created) {}

  // The interface name the kernel reports.
  const std::string& name() const { return name_; }
  // Whether the interface did not exist before open().
  bool created() const { return created_; }

  int fd() const override { return fd_.get(); }
  NetOffloads supported_offloads() const override { return supported_; }
  Result<void> set_offloads(const NetOffloads& offloads) override;
  Result<std::optional<size_t>> read_frame(std::span<const iovec> iov) override;
  Result<std::optional<size_t>> write_frame(std::span<const iovec> iov) override;

 private:
  Result<void> probe_offloads();
  Result<void> set_mtu(uint16_t mtu);
  Result<void> bring_up();

  UniqueFd fd_;
  std::string name_;
  bool created_;
  NetOffloads supported_;
};

}  // namespace petrel::virtio
