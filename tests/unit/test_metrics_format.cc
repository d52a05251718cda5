// metrics_to_json / metrics_to_prometheus: field names, units, label escaping and the shape
// of the text exposition format (every sample labelled with the VM, HELP/TYPE per family).
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "api/metrics_format.h"

using petrel::ApiMetrics;
using petrel::VmMetrics;
using petrel::VmState;

namespace {

VmMetrics sample_vm() {
  VmMetrics vm;
  vm.name = "web\"1\\\n";
  vm.state = VmState::kPaused;
  vm.uptime = std::chrono::milliseconds(2500);
  vm.guest_memory_bytes = 512ull << 20;
  vm.host_rss_bytes = 40ull << 20;
  for (uint32_t id = 0; id < 2; ++id) {
    petrel::VcpuMetrics v;
    v.id = id;
    v.cpu_time_ns = 1'500'000'000ull * (id + 1);
    v.exits = {{"io", 10 + id}, {"mmio", 20}, {"hlt", 0}};
    vm.vcpus.push_back(v);
  }
  vm.disks.push_back({"disk0", "/var/lib/\"odd\"\\path.img", 4096, 8192, 1, 2, 3, 4, 5});
  vm.nets.push_back({"net0", "tap0", 100, 2, 1, 300, 4, 3});
  return vm;
}

ApiMetrics sample_api() {
  ApiMetrics api;
  api.requests_total = 7;
  api.responses_by_status = {{200, 5}, {404, 1}, {409, 1}};
  api.connections_total = 3;
  api.connections_active = 1;
  api.event_streams_active = 1;
  return api;
}

struct Parsed {
  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> helps;
  std::map<std::string, std::string> samples;  // "name{labels}" -> value
  std::vector<std::string> sample_lines;
};

Parsed parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    REQUIRE_FALSE(line.empty());
    if (line.rfind("# TYPE ", 0) == 0) {
      auto rest = line.substr(7);
      auto sp = rest.find(' ');
      p.types[rest.substr(0, sp)] = rest.substr(sp + 1);
    } else if (line.rfind("# HELP ", 0) == 0) {
      auto rest = line.substr(7);
      p.helps.insert(rest.substr(0, rest.find(' ')));
    } else {
      auto sp = line.rfind(' ');
      p.samples[line.substr(0, sp)] = line.substr(sp + 1);
      p.sample_lines.push_back(line);
    }
  }
  return p;
}

}  // namespace

TEST_CASE("metrics JSON carries every field with its unit", "[metrics][api]") {
  auto j = petrel::metrics_to_json(sample_vm(), sample_api());
  CHECK(j["name"] == "web\"1\\\n");
  CHECK(j["state"] == "paused");
  CHECK(j["uptime_seconds"].get<double>() == Approx(2.5));
  CHECK(j["guest_memory_bytes"] == 512ull << 20);
  CHECK(j["host_rss_bytes"] == 40ull << 20);
  REQUIRE(j["vcpus"].size() == 2);
  CHECK(j["vcpus"][1]["id"] == 1);
  CHECK(j["vcpus"][1]["cpu_time_ns"] == 3'000'000'000ull);
  CHECK(j["vcpus"][1]["cpu_seconds"].get<double>() == Approx(3.0));
  CHECK(j["vcpus"][1]["exits"]["io"] == 11);
  CHECK(j["vcpus"][1]["exits"]["hlt"] == 0);
  REQUIRE(j["disks"].size() == 1);
  CHECK(j["disks"][0] == nlohmann::json{{"id", "disk0"},
                                        {"path", "/var/lib/\"odd\"\\path.img"},
                                        {"read_bytes", 4096},
                                        {"write_bytes", 8192},
                                        {"read_ops", 1},
                                        {"write_ops", 2},
                                        {"flush_ops", 3},
                                        {"discard_ops", 4},
                                        {"errors", 5}});
  CHECK(j["nets"][0] == nlohmann::json{{"id", "net0"},
                                       {"tap", "tap0"},
                                       {"rx_bytes", 100},
                                       {"rx_packets", 2},
                                       {"rx_drops", 1},
                                       {"tx_bytes", 300},
                                       {"tx_packets", 4},
                                       {"tx_drops", 3}});
  CHECK(j["api"]["requests_total"] == 7);
  CHECK(j["api"]["responses_by_status"] == nlohmann::json{{"200", 5}, {"404", 1}, {"409", 1}});
  CHECK(j["api"]["connections_total"] == 3);
  CHECK(j["api"]["connections_active"] == 1);
  CHECK(j["api"]["event_streams_active"] == 1);
}

TEST_CASE("metrics JSON of an empty VM and of invalid UTF-8 still dumps", "[metrics][api]") {
  VmMetrics vm;
  vm.name = std::string("bad\xff\xfe", 5);
  vm.disks.push_back({"disk0", std::string("/tmp/\xc3(", 7), 0, 0, 0, 0, 0, 0, 0});
  auto j = petrel::metrics_to_json(vm, ApiMetrics{});
  CHECK(j["state"] == "created");
  CHECK(j["vcpus"].is_array());
  CHECK(j["nets"].is_array());
  CHECK(j["nets"].empty());
  CHECK(j["api"]["responses_by_status"].is_object());
  std::string dumped;
  CHECK_NOTHROW(dumped = j.dump());  // strict UTF-8 check in dump()
  CHECK(j["name"].get<std::string>().rfind("bad", 0) == 0);
}

TEST_CASE("Prometheus label escaping", "[metrics][api]") {
  CHECK(petrel::prometheus_escape_label("plain") == "plain");
  CHECK(petrel::prometheus_escape_label("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  CHECK(petrel::prometheus_escape_label(std::string("x\xff", 2)) == "x\xef\xbf\xbd");
}

TEST_CASE("Prometheus text: families, types, labels and values", "[metrics][api]") {
  const std::string text = petrel::metrics_to_prometheus(sample_vm(), sample_api());
  REQUIRE(text.back() == '\n');
  Parsed p = parse(text);
  const std::string vm = "vm=\"web\\\"1\\\\\\n\"";

  // Every family has HELP and TYPE; counters end in _total, and every sample belongs to a
  // declared family and carries the vm label first.
  for (const auto& [family, type] : p.types) {
    CHECK(p.helps.count(family) == 1);
    if (type == "counter") {
      CHECK(family.size() > 6);
      CHECK(family.substr(family.size() - 6) == "_total");
    } else {
      CHECK(type == "gauge");
    }
  }
  for (const auto& line : p.sample_lines) {
    const std::string name = line.substr(0, line.find('{'));
    CHECK(p.types.count(name) == 1);
    CHECK(line.substr(name.size(), vm.size() + 1) == "{" + vm);
  }
  for (const char* family : {"petrel_vcpu_cpu_seconds_total", "petrel_vcpu_exits_total",
                             "petrel_guest_memory_bytes",     "petrel_host_rss_bytes",
                             "petrel_uptime_seconds",         "petrel_vm_state",
                             "petrel_disk_read_bytes_total",  "petrel_disk_write_bytes_total",
                             "petrel_disk_read_ops_total",    "petrel_disk_write_ops_total",
                             "petrel_disk_flush_ops_total",   "petrel_disk_discard_ops_total",
                             "petrel_disk_errors_total",      "petrel_net_rx_bytes_total",
                             "petrel_net_rx_packets_total",   "petrel_net_rx_drops_total",
                             "petrel_net_tx_bytes_total",     "petrel_net_tx_packets_total",
                             "petrel_net_tx_drops_total",     "petrel_api_requests_total",
                             "petrel_api_connections_active"}) {
    INFO(family);
    CHECK(p.types.count(family) == 1);
  }

  auto value = [&](const std::string& key) {
    INFO(key);
    REQUIRE(p.samples.count(key) == 1);
    return p.samples.at(key);
  };
  CHECK(value("petrel_vm_state{" + vm + ",state=\"paused\"}") == "1");
  CHECK(value("petrel_vm_state{" + vm + ",state=\"running\"}") == "0");
  CHECK(value("petrel_vm_state{" + vm + ",state=\"shutting-down\"}") == "0");
  CHECK(std::stod(value("petrel_uptime_seconds{" + vm + "}")) == Approx(2.5));
  CHECK(value("petrel_guest_memory_bytes{" + vm + "}") == "536870912");
  CHECK(value("petrel_vcpus{" + vm + "}") == "2");
  CHECK(std::stod(value("petrel_vcpu_cpu_seconds_total{" + vm + ",vcpu=\"1\"}")) == Approx(3.0));
  CHECK(value("petrel_vcpu_exits_total{" + vm + ",vcpu=\"0\",reason=\"io\"}") == "10");
  CHECK(value("petrel_vcpu_exits_total{" + vm + ",vcpu=\"1\",reason=\"mmio\"}") == "20");
  CHECK(value("petrel_disk_info{" + vm +
              ",disk=\"disk0\",path=\"/var/lib/\\\"odd\\\"\\\\path.img\"}") == "1");
  CHECK(value("petrel_disk_read_bytes_total{" + vm + ",disk=\"disk0\"}") == "4096");
  CHECK(value("petrel_disk_discard_ops_total{" + vm + ",disk=\"disk0\"}") == "4");
  CHECK(value("petrel_disk_errors_total{" + vm + ",disk=\"disk0\"}") == "5");
  CHECK(value("petrel_net_info{" + vm + ",nic=\"net0\",tap=\"tap0\"}") == "1");
  CHECK(value("petrel_net_rx_drops_total{" + vm + ",nic=\"net0\"}") == "1");
  CHECK(value("petrel_net_tx_bytes_total{" + vm + ",nic=\"net0\"}") == "300");
  CHECK(value("petrel_api_requests_total{" + vm + ",code=\"409\"}") == "1");
  CHECK(value("petrel_api_requests_total{" + vm + ",code=\"200\"}") == "5");
  CHECK(value("petrel_api_connections_active{" + vm + "}") == "1");
}
