// Prints metrics_to_prometheus() of a populated VmMetrics + ApiMetrics (2 vCPUs, 2 disks,
// 1 NIC, a name and a path that need escaping) on stdout, for check_prometheus.py.
// Usage: render_prometheus_sample [VM-NAME]
#include <cstdio>
#include <string>

#include "api/metrics_format.h"
#include "vmm/vcpu.h"

int main(int argc, char** argv) {
  using namespace petrel;
  VmMetrics vm;
  vm.name = argc > 1 ? argv[1] : "sample";
  vm.state = VmState::kRunning;
  vm.uptime = std::chrono::milliseconds(12345);
  vm.guest_memory_bytes = 256ull << 20;
  vm.host_rss_bytes = 30ull << 20;
  for (uint32_t id = 0; id < 2; ++id) {
    VcpuMetrics v;
    v.id = id;
    v.cpu_time_ns = 750'000'000ull + id;
    uint64_t n = 1;
    for (auto reason : Vcpu::kExitReasons) {
      v.exits.emplace_back(std::string(reason), n++ * (id + 1));
    }
    vm.vcpus.push_back(std::move(v));
  }
  vm.disks.push_back({"disk0", "/images/root \"a\"\\b.img", 1 << 20, 2 << 20, 256, 512, 3, 4, 1});
  vm.disks.push_back({"disk1", "/images/data.img", 0, 0, 0, 0, 0, 0, 0});
  vm.nets.push_back({"net0", "tap-petrel0", 1500, 1, 0, 3000, 2, 1});
  ApiMetrics api;
  api.requests_total = 4;
  api.responses_by_status = {{200, 2}, {400, 1}, {409, 1}};
  api.connections_total = 2;
  api.connections_active = 1;
  api.event_streams_active = 0;
  const std::string text = metrics_to_prometheus(vm, api);
  return std::fwrite(text.data(), 1, text.size(), stdout) == text.size() ? 0 : 1;
}
