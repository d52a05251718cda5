// A network namespace with one TAP for end-to-end network tests: created with iproute2
// (`ip netns add`, `ip tuntap add ... mode tap vnet_hdr`), given an address and brought up;
// deleted again (TAP included) by the destructor. Processes run inside it through
// `ip netns exec`. Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN) and /dev/net/tun.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "petrel_process.h"

namespace petrel::test {

// Why network namespaces cannot be used here, or nullopt when they can.
std::optional<std::string> netns_unavailable();

class NetNamespace {
 public:
  // Creates namespace `name` holding TAP `tap` with address `cidr` (e.g. "10.0.2.1/24"),
  // up. Throws std::runtime_error with ip's message on failure (whatever was created is
  // deleted again).
  NetNamespace(std::string name, std::string tap, const std::string& cidr);
  ~NetNamespace();
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;

  const std::string& name() const { return name_; }
  const std::string& tap() const { return tap_; }

  // Runs program with args inside the namespace (ip netns exec).
  ProcessResult run(const std::string& program, const std::vector<std::string>& args,
                    const RunOptions& options = {}) const;

  // The TAP's packet counters, from the host kernel's point of view: rx = frames the
  // kernel received from the TAP (sent by the guest), tx = frames it sent into the TAP.
  struct Counters {
    uint64_t rx_packets = 0;
    uint64_t tx_packets = 0;
  };
  Counters tap_counters() const;

 private:
  std::string name_;
  std::string tap_;
};

}  // namespace petrel::test
