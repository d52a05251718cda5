#include "netns.h"

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace petrel::test {

namespace {

// iproute2's `ip`, wherever this distribution installs it.
std::optional<std::string> ip_binary() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(path, X_OK) == 0) {
      return std::string(path);
    }
  }
  return std::nullopt;
}

ProcessResult ip(const std::vector<std::string>& args) {
  auto bin = ip_binary();
  if (!bin) {
    throw std::runtime_error("iproute2's ip is not installed");
  }
  RunOptions options;
  options.timeout = std::chrono::seconds(20);
  return run_process(*bin, args, options);
}

void ip_or_throw(const std::vector<std::string>& args) {
  auto r = ip(args);
  if (r.exit_code != 0) {
    std::string cmd = "ip";
    for (const auto& a : args) {
      cmd += " " + a;
    }
    throw std::runtime_error(cmd + " failed: " + r.err);
  }
}

}  // namespace

std::optional<std::string> netns_unavailable() {
  if (::geteuid() != 0) {
    return "network namespaces and TAP devices need root";
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    return "/dev/net/tun is not available";
  }
  if (!ip_binary()) {
    return "iproute2's ip is not installed";
  }
  return std::nullopt;
}

NetNamespace::NetNamespace(std::string name, std::string tap, const std::string& cidr)
    : name_(std::move(name)), tap_(std::move(tap)) {
  // A namespace left over by a killed run of the same pid would make `add` fail.
  (void)ip({"netns", "delete", name_});
  ip_or_throw({"netns", "add", name_});
  try {
    ip_or_throw(
        {"-n", name_, "tuntap", "add", "dev", tap_, "mode", "tap", "vnet_hdr", "multi_queue"});
    ip_or_throw({"-n", name_, "addr", "add", cidr, "dev", tap_});
    ip_or_throw({"-n", name_, "link", "set", tap_, "up"});
  } catch (...) {
    (void)ip({"netns", "delete", name_});
    throw;
  }
}

NetNamespace::~NetNamespace() {
  try {
    // Deleting the namespace destroys the TAP with it (no process holds it any more).
    (void)ip({"netns", "delete", name_});
  } catch (...) {
    // Nothing better to do in a destructor; a leftover namespace is named after the pid.
  }
}

ProcessResult NetNamespace::run(const std::string& program, const std::vector<std::string>& args,
                                const RunOptions& options) const {
  std::vector<std::string> all{"netns", "exec", name_, program};
  all.insert(all.end(), args.begin(), args.end());
  return run_process(*ip_binary(), all, options);
}

NetNamespace::Counters NetNamespace::tap_counters() const {
  auto r = ip({"-n", name_, "-j", "-s", "link", "show", "dev", tap_});
  if (r.exit_code != 0) {
    throw std::runtime_error("ip link show " + tap_ + " failed: " + r.err);
  }
  try {
    auto j = nlohmann::json::parse(r.out);
    const auto& stats = j.at(0).at("stats64");
    return Counters{stats.at("rx").at("packets").get<uint64_t>(),
                    stats.at("tx").at("packets").get<uint64_t>()};
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("unexpected ip -j output: ") + e.what() + ": " + r.out);
  }
}

}  // namespace petrel::test
