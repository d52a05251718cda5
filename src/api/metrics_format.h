// Renderers of a VM's metrics for GET /v1/metrics (JSON) and GET /v1/metrics/prometheus
// (Prometheus text exposition format 0.0.4, served as "text/plain; version=0.0.4").
//
// Pure functions of their arguments; any thread. Strings that come from the configuration
// (VM name, image paths, TAP names) are rendered as valid UTF-8 (invalid bytes become
// U+FFFD) and, in Prometheus label values, escaped (\\, \", \n), so no input breaks the
// output's syntax.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "api/api_metrics.h"
#include "vmm/vm_control.h"

namespace petrel {

// {"name", "state", "uptime_seconds" (number), "guest_memory_bytes", "host_rss_bytes",
//  "vcpus": [{"id", "cpu_seconds" (number), "cpu_time_ns", "exits": {"io": n, ...}}],
//  "disks": [{"id", "path", "read_bytes", "write_bytes", "read_ops", "write_ops",
//             "flush_ops", "discard_ops", "errors"}],
//  "nets": [{"id", "tap", "rx_bytes", "rx_packets", "rx_drops", "tx_bytes", "tx_packets",
//            "tx_drops"}],
//  "balloon": {"target_bytes", "actual_bytes", "inflated_pages_total",
//              "deflated_pages_total", "reported_pages_total", "ignored_pfns_total",
//              "oom_deflated_pages_total"}
//             (only when the VM has a balloon),
//  "api": {"requests_total", "responses_by_status": {"200": n, ...}, "connections_total",
//          "connections_active", "event_streams_active"}}
nlohmann::json metrics_to_json(const VmMetrics& vm, const ApiMetrics& api);

// Every family has # HELP and # TYPE lines and every sample the label vm="<name>". Families
// (counters end in _total; units are seconds and bytes):
//   petrel_vm_state{state}                 gauge, 1 for the current state, 0 for the others
//   petrel_uptime_seconds, petrel_guest_memory_bytes, petrel_host_rss_bytes, petrel_vcpus
//   petrel_vcpu_cpu_seconds_total{vcpu}    petrel_vcpu_exits_total{vcpu,reason}
//   petrel_disk_info{disk,path} (1)        petrel_disk_{read,write}_bytes_total{disk}
//   petrel_disk_{read,write,flush,discard}_ops_total{disk}, petrel_disk_errors_total{disk}
//   petrel_net_info{nic,tap} (1)           petrel_net_{rx,tx}_{bytes,packets,drops}_total{nic}
//   only with a balloon: petrel_balloon_{target,actual}_bytes (gauges),
//   petrel_balloon_{inflated,deflated,reported}_pages_total, petrel_balloon_ignored_pfns_total
//   petrel_api_requests_total{code}        petrel_api_connections_total
//   petrel_api_connections_active          petrel_api_event_streams_active
std::string metrics_to_prometheus(const VmMetrics& vm, const ApiMetrics& api);

// A Prometheus label value: \ -> \\, " -> \", newline -> \n (the value is made UTF-8 first).
std::string prometheus_escape_label(std::string_view value);

}  // namespace petrel
