#include "api/metrics_format.h"

#include <array>
#include <initializer_list>
#include <utility>

#include <fmt/format.h>

namespace petrel {

namespace {

constexpr std::array kAllStates{VmState::kCreated,      VmState::kRunning,   VmState::kPaused,
                                VmState::kShuttingDown, VmState::kShutOff,   VmState::kCrashed,
                                VmState::kEmpty,        VmState::kReceiving, VmState::kMigrated};
static_assert(kAllStates.size() == kVmStateCount);

// `text` as valid UTF-8: invalid bytes become U+FFFD.
std::string utf8(std::string_view text) {
  try {
    return nlohmann::json::parse(
               nlohmann::json(std::string(text))
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
        .get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return {};  // not reached: the dump above cannot produce invalid JSON
  }
}

double seconds(std::chrono::nanoseconds ns) {
  return std::chrono::duration<double>(ns).count();
}

double ns_to_seconds(uint64_t ns) {
  return static_cast<double>(ns) / 1e9;
}

using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Appends families and samples in the text format; every sample gets vm="<name>" first.
class PromText {
 public:
  explicit PromText(std::string_view vm) : vm_(prometheus_escape_label(vm)) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }
  void sample(std::string_view name, Labels labels, uint64_t value) {
    put(name, labels, fmt::format("{}", value));
  }
  void sample(std::string_view name, Labels labels, double value) {
    put(name, labels, fmt::format("{}", value));
  }
  std::string take() { return std::move(out_); }

 private:
  void put(std::string_view name, Labels labels, const std::string& value) {
    fmt::format_to(std::back_inserter(out_), "{}{{vm=\"{}\"", name, vm_);
    for (const auto& [key, label_value] : labels) {
      fmt::format_to(std::back_inserter(out_), ",{}=\"{}\"", key,
                     prometheus_escape_label(label_value));
    }
    fmt::format_to(std::back_inserter(out_), "}} {}\n", value);
  }

  std::string vm_;
  std::string out_;
};

void vcpu_families(PromText& p, const VmMetrics& vm) {
  p.family("petrel_vcpu_cpu_seconds_total", "counter",
           "CPU time used by the vCPU thread (guest and VMM work on its behalf), in seconds.");
  for (const auto& v : vm.vcpus) {
    p.sample("petrel_vcpu_cpu_seconds_total", {{"vcpu", std::to_string(v.id)}},
             ns_to_seconds(v.cpu_time_ns));
  }
  p.family("petrel_vcpu_exits_total", "counter", "KVM_RUN exits of the vCPU by reason.");
  for (const auto& v : vm.vcpus) {
    const std::string id = std::to_string(v.id);
    for (const auto& [reason, count] : v.exits) {
      p.sample("petrel_vcpu_exits_total", {{"vcpu", id}, {"reason", reason}}, count);
    }
  }
}

void disk_families(PromText& p, const VmMetrics& vm) {
  p.family("petrel_disk_info", "gauge", "Each virtio-blk disk and its backing file (always 1).");
  for (const auto& d : vm.disks) {
    p.sample("petrel_disk_info", {{"disk", d.id}, {"path", d.path}}, uint64_t{1});
  }
  struct Counter {
    const char* name;
    const char* help;
    uint64_t DiskMetrics::*field;
  };
  static constexpr std::array<Counter, 7> kCounters{{
      {"petrel_disk_read_bytes_total", "Bytes read by the guest.", &DiskMetrics::read_bytes},
      {"petrel_disk_write_bytes_total", "Bytes written by the guest.", &DiskMetrics::write_bytes},
      {"petrel_disk_read_ops_total", "Read requests completed.", &DiskMetrics::read_ops},
      {"petrel_disk_write_ops_total", "Write requests completed.", &DiskMetrics::write_ops},
      {"petrel_disk_flush_ops_total", "Flush requests completed.", &DiskMetrics::flush_ops},
      {"petrel_disk_discard_ops_total", "Discard and write-zeroes requests completed.",
       &DiskMetrics::discard_ops},
      {"petrel_disk_errors_total", "Requests completed with an I/O error or as unsupported.",
       &DiskMetrics::errors},
  }};
  for (const Counter& c : kCounters) {
    p.family(c.name, "counter", c.help);
    for (const auto& d : vm.disks) {
      p.sample(c.name, {{"disk", d.id}}, d.*c.field);
    }
  }
}

void net_families(PromText& p, const VmMetrics& vm) {
  p.family("petrel_net_info", "gauge", "Each virtio-net NIC and its TAP interface (always 1).");
  for (const auto& n : vm.nets) {
    p.sample("petrel_net_info", {{"nic", n.id}, {"tap", n.tap}}, uint64_t{1});
  }
  struct Counter {
    const char* name;
    const char* help;
    uint64_t NetMetrics::*field;
  };
  static constexpr std::array<Counter, 6> kCounters{{
      {"petrel_net_rx_bytes_total", "Frame bytes delivered to the guest.", &NetMetrics::rx_bytes},
      {"petrel_net_rx_packets_total", "Frames delivered to the guest.", &NetMetrics::rx_packets},
      {"petrel_net_rx_drops_total", "Frames from the host that could not be delivered.",
       &NetMetrics::rx_drops},
      {"petrel_net_tx_bytes_total", "Frame bytes sent by the guest.", &NetMetrics::tx_bytes},
      {"petrel_net_tx_packets_total", "Frames sent by the guest.", &NetMetrics::tx_packets},
      {"petrel_net_tx_drops_total", "Guest frames refused or not written.", &NetMetrics::tx_drops},
  }};
  for (const Counter& c : kCounters) {
    p.family(c.name, "counter", c.help);
    for (const auto& n : vm.nets) {
      p.sample(c.name, {{"nic", n.id}}, n.*c.field);
    }
  }
}

// Only when the VM has a balloon: a family without samples would claim one.
void balloon_families(PromText& p, const VmMetrics& vm) {
  if (!vm.balloon) {
    return;
  }
  const BalloonMetrics& b = *vm.balloon;
  p.family("petrel_balloon_target_bytes", "gauge",
           "Memory the host asks the guest's balloon to hold, in bytes.");
  p.sample("petrel_balloon_target_bytes", {}, b.target);
  p.family("petrel_balloon_actual_bytes", "gauge",
           "Memory the guest's balloon holds (as the guest reports it), in bytes.");
  p.sample("petrel_balloon_actual_bytes", {}, b.actual);
  struct Counter {
    const char* name;
    const char* help;
    uint64_t BalloonMetrics::*field;
  };
  static constexpr std::array<Counter, 5> kCounters{{
      {"petrel_balloon_inflated_pages_total", "4 KiB pages the guest gave to the balloon.",
       &BalloonMetrics::inflated_pages_total},
      {"petrel_balloon_deflated_pages_total", "4 KiB pages the guest took back from the balloon.",
       &BalloonMetrics::deflated_pages_total},
      {"petrel_balloon_reported_pages_total", "4 KiB free pages the guest reported to the host.",
       &BalloonMetrics::reported_pages_total},
      {"petrel_balloon_ignored_pfns_total", "Page numbers from the guest outside its RAM, ignored.",
       &BalloonMetrics::ignored_pfns_total},
      {"petrel_balloon_oom_deflated_pages_total",
       "4 KiB pages the guest took back without the host lowering the target (deflate on OOM).",
       &BalloonMetrics::oom_deflated_pages_total},
  }};
  for (const Counter& c : kCounters) {
    p.family(c.name, "counter", c.help);
    p.sample(c.name, {}, b.*c.field);
  }
}

void api_families(PromText& p, const ApiMetrics& api) {
  p.family("petrel_api_requests_total", "counter", "Control API responses by HTTP status code.");
  for (const auto& [status, count] : api.responses_by_status) {
    p.sample("petrel_api_requests_total", {{"code", std::to_string(status)}}, count);
  }
  p.family("petrel_api_connections_total", "counter", "Control API connections accepted.");
  p.sample("petrel_api_connections_total", {}, api.connections_total);
  p.family("petrel_api_connections_active", "gauge", "Control API connections open now.");
  p.sample("petrel_api_connections_active", {}, api.connections_active);
  p.family("petrel_api_event_streams_active", "gauge", "Event streams (/v1/events) open now.");
  p.sample("petrel_api_event_streams_active", {}, api.event_streams_active);
}

}  // namespace

std::string prometheus_escape_label(std::string_view value) {
  const std::string text = utf8(value);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

nlohmann::json metrics_to_json(const VmMetrics& vm, const ApiMetrics& api) {
  nlohmann::json vcpus = nlohmann::json::array();
  for (const auto& v : vm.vcpus) {
    nlohmann::json exits = nlohmann::json::object();
    for (const auto& [reason, count] : v.exits) {
      exits[reason] = count;
    }
    vcpus.push_back({{"id", v.id},
                     {"cpu_seconds", ns_to_seconds(v.cpu_time_ns)},
                     {"cpu_time_ns", v.cpu_time_ns},
                     {"exits", std::move(exits)}});
  }
  nlohmann::json disks = nlohmann::json::array();
  for (const auto& d : vm.disks) {
    disks.push_back({{"id", utf8(d.id)},
                     {"path", utf8(d.path)},
                     {"read_bytes", d.read_bytes},
                     {"write_bytes", d.write_bytes},
                     {"read_ops", d.read_ops},
                     {"write_ops", d.write_ops},
                     {"flush_ops", d.flush_ops},
                     {"discard_ops", d.discard_ops},
                     {"errors", d.errors}});
  }
  nlohmann::json nets = nlohmann::json::array();
  for (const auto& n : vm.nets) {
    nets.push_back({{"id", utf8(n.id)},
                    {"tap", utf8(n.tap)},
                    {"rx_bytes", n.rx_bytes},
                    {"rx_packets", n.rx_packets},
                    {"rx_drops", n.rx_drops},
                    {"tx_bytes", n.tx_bytes},
                    {"tx_packets", n.tx_packets},
                    {"tx_drops", n.tx_drops}});
  }
  nlohmann::json by_status = nlohmann::json::object();
  for (const auto& [status, count] : api.responses_by_status) {
    by_status[std::to_string(status)] = count;
  }
  nlohmann::json out = {
      {"name", utf8(vm.name)},
      {"state", std::string(to_string(vm.state))},
      {"uptime_seconds", seconds(vm.uptime)},
      {"guest_memory_bytes", vm.guest_memory_bytes},
      {"host_rss_bytes", vm.host_rss_bytes},
      {"vcpus", std::move(vcpus)},
      {"disks", std::move(disks)},
      {"nets", std::move(nets)},
      {"api",
       {{"requests_total", api.requests_total},
        {"responses_by_status", std::move(by_status)},
        {"connections_total", api.connections_total},
        {"connections_active", api.connections_active},
        {"event_streams_active", api.event_streams_active}}},
  };
  if (vm.balloon) {
    const BalloonMetrics& b = *vm.balloon;
    out["balloon"] = {{"target_bytes", b.target},
                      {"actual_bytes", b.actual},
                      {"inflated_pages_total", b.inflated_pages_total},
                      {"deflated_pages_total", b.deflated_pages_total},
                      {"reported_pages_total", b.reported_pages_total},
                      {"ignored_pfns_total", b.ignored_pfns_total},
                      {"oom_deflated_pages_total", b.oom_deflated_pages_total}};
  }
  return out;
}

std::string metrics_to_prometheus(const VmMetrics& vm, const ApiMetrics& api) {
  PromText p(vm.name);
  p.family("petrel_vm_state", "gauge", "The VM's lifecycle state: 1 for the current one.");
  for (VmState s : kAllStates) {
    p.sample("petrel_vm_state", {{"state", to_string(s)}}, uint64_t{s == vm.state ? 1u : 0u});
  }
  p.family("petrel_uptime_seconds", "gauge", "Seconds since the guest last started.");
  p.sample("petrel_uptime_seconds", {}, seconds(vm.uptime));
  p.family("petrel_guest_memory_bytes", "gauge", "Configured guest RAM in bytes.");
  p.sample("petrel_guest_memory_bytes", {}, vm.guest_memory_bytes);
  p.family("petrel_host_rss_bytes", "gauge", "Resident set size of the petrel process in bytes.");
  p.sample("petrel_host_rss_bytes", {}, vm.host_rss_bytes);
  p.family("petrel_vcpus", "gauge", "Number of vCPUs.");
  p.sample("petrel_vcpus", {}, uint64_t{vm.vcpus.size()});
  vcpu_families(p, vm);
  disk_families(p, vm);
  net_families(p, vm);
  balloon_families(p, vm);
  api_families(p, api);
  return p.take();
}

}  // namespace petrel
