// petrelctl's readable output (src/api/petrelctl/ctl_format.h).
#include <catch2/catch.hpp>

#include <limits>

#include "api/petrelctl/ctl_format.h"

using namespace petrel::ctl;
using nlohmann::json;

TEST_CASE("petrelctl: bytes and durations", "[petrelctl]") {
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(100) == "100 B");
  CHECK(format_bytes(1024) == "1 KiB");
  CHECK(format_bytes(512ull << 20) == "512 MiB");
  CHECK(format_bytes(3ull << 29) == "1.5 GiB");
  CHECK(format_bytes(4ull << 30) == "4 GiB");
  CHECK(format_bytes(UINT64_MAX) == "16384 PiB");
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(3.9) == "3s");
  CHECK(format_duration(123) == "2m03s");
  CHECK(format_duration(3723.5) == "1h02m03s");
  CHECK(format_duration(90061) == "1d01h01m01s");
  CHECK(format_duration(-5) == "0s");
  CHECK(format_duration(std::numeric_limits<double>::quiet_NaN()) == "0s");
  CHECK(format_duration(std::numeric_limits<double>::infinity()) == "0s");
  CHECK_FALSE(format_duration(1e300).empty());
}

TEST_CASE("petrelctl: info lines are aligned", "[petrelctl]") {
  json info = {{"name", "vm1"},
               {"state", "running"},
               {"vcpus", 2},
               {"memory_bytes", 536870912},
               {"uptime_seconds", 3723},
               {"started_at", "2026-11-22T05:00:00Z"},
               {"boot_count", 1},
               {"exec_mode", "PVM emulated"},
               {"version", "0.1.0"},
               {"pid", 42}};
  std::string text = format_info(info);
  CHECK(text.find("name:       vm1\n") != std::string::npos);
  CHECK(text.find("memory:     512 MiB\n") != std::string::npos);
  CHECK(text.find("uptime:     1h02m03s\n") != std::string::npos);
  CHECK(text.find("started at: 2026-11-22T05:00:00Z\n") != std::string::npos);
  CHECK(text.find("exec mode:  PVM emulated\n") != std::string::npos);

  json hostile = {{"name", "\x1b[31mred"}, {"vcpus", json::array()}, {"started_at", nullptr}};
  text = format_info(hostile);
  CHECK(text.find('\x1b') == std::string::npos);
  CHECK(text.find("vcpus:      -\n") != std::string::npos);
  CHECK(text.find("started at: -\n") != std::string::npos);
  CHECK_FALSE(format_info(json("not an object")).empty());
}

TEST_CASE("petrelctl: events", "[petrelctl]") {
  json state = {{"seq", 1},
                {"time", "2026-11-22T05:00:00.123Z"},
                {"type", "state"},
                {"data", {{"from", "running"}, {"to", "paused"}, {"action", "pause"}}}};
  CHECK(format_event(state) == "2026-11-22T05:00:00.123Z state running -> paused (pause)");
  json reset = {{"seq", 2},
                {"time", "2026-11-22T05:00:01.000Z"},
                {"type", "reset"},
                {"data", {{"initiator", "guest"}}}};
  CHECK(format_event(reset) == "2026-11-22T05:00:01.000Z reset initiator=guest");
  CHECK(format_event(json::object()) == "- -");
  json deep = json::array();
  for (int i = 0; i < 100; ++i) {
    deep = json::array({deep});
  }
  CHECK_FALSE(format_event({{"type", "x"}, {"data", deep}}).empty());
}

TEST_CASE("petrelctl: list table", "[petrelctl]") {
  std::vector<ListRow> rows{
      list_row({{"name", "web"},
                {"state", "running"},
                {"vcpus", 2},
                {"memory_bytes", 1073741824},
                {"uptime_seconds", 65}},
               "ignored"),
      list_row(json(), "db"),
      ListRow{.name = "gone", .state = "unreachable"},
  };
  CHECK(rows[1].name == "db");
  std::string table = format_list(rows);
  CHECK(table ==
        "NAME  STATE        VCPUS  MEMORY  UPTIME\n"
        "web   running          2   1 GiB  1m05s\n"
        "db    -                -       -  -\n"
        "gone  unreachable      -       -  -\n");
  CHECK(format_list({}) == "NAME  STATE  VCPUS  MEMORY  UPTIME\n");
}

TEST_CASE("petrelctl: metrics and error messages", "[petrelctl]") {
  json metrics = {{"name", "vm1"},
                  {"host_rss_bytes", 1048576},
                  {"vcpus", {{{"id", 0}, {"exits", {{"io", 3}}}}}},
                  {"api", {{"requests_total", 7}}}};
  std::string text = format_metrics(metrics);
  CHECK(text.find("host_rss_bytes: 1 MiB\n") != std::string::npos);
  CHECK(text.find("vcpus[0]:       exits.io=3 id=0\n") != std::string::npos);
  CHECK(text.find("api:            requests_total=7\n") != std::string::npos);

  CHECK(api_error_message(
            409, R"({"error":{"code":"state","message":"cannot pause: the VM is paused"}})") ==
        "cannot pause: the VM is paused");
  CHECK(api_error_message(500, "") == "HTTP 500");
  CHECK(api_error_message(502, "bad gateway\n") == "HTTP 502: bad gateway");
  CHECK(api_error_message(400, R"({"error":{"message":7}})") ==
        R"(HTTP 400: {"error":{"message":7}})");
}

TEST_CASE("petrelctl: snapshot and migration output", "[petrelctl]") {
  using nlohmann::json;
  CHECK(format_snapshot(json{{"path", "/srv/s1"},
                             {"memory_bytes_written", 512ULL << 20},
                             {"state_bytes", 12800},
                             {"duration_ms", 830}}) ==
        "snapshot /srv/s1: 512 MiB of memory, 12.5 KiB of state, in 830 ms");
  CHECK(format_snapshot(json::array()) == "snapshot -: - of memory, - of state, in - ms");

  json status = {{"role", "send"},
                 {"phase", "precopy"},
                 {"peer", "tcp:h:1"},
                 {"round", 3},
                 {"bytes", 3ULL << 29},
                 {"pages", 10},
                 {"remaining_bytes", 200ULL << 20},
                 {"dirty_rate_bytes_per_s", 100ULL << 20},
                 {"bandwidth_bytes_per_s", 800ULL << 20},
                 {"expected_downtime_ms", 120},
                 {"elapsed_ms", 2000},
                 {"total_ms", nullptr},
                 {"downtime_ms", nullptr},
                 {"error", nullptr}};
  CHECK(format_migration_progress(status) ==
        "precopy round 3: 1.5 GiB sent, 200 MiB remaining, 800 MiB/s, dirtying 100 MiB/s, "
        "expected downtime 120 ms");
  std::string text = format_migration(status);
  CHECK(text.find("phase:             precopy\n") != std::string::npos);
  CHECK(text.find("sent:              1.5 GiB\n") != std::string::npos);
  CHECK(text.find("bandwidth:         800 MiB/s\n") != std::string::npos);
  CHECK(text.find("total:             -\n") != std::string::npos);
  CHECK(text.find("error") == std::string::npos);

  status["role"] = "receive";
  status["phase"] = "failed";
  status["error"] = "boom\x1b";
  text = format_migration(status);
  CHECK(text.find("received:          1.5 GiB\n") != std::string::npos);
  CHECK(text.find("error:             boom?\n") != std::string::npos);
  CHECK(format_migration_progress(status) == "failed");
  // Hostile types never throw.
  CHECK(!format_migration(json{{"bytes", "x"}, {"phase", 5}}).empty());
  CHECK(format_migration_progress(json("x")) == "-");
}

TEST_CASE("petrelctl: balloon info", "[petrelctl][balloon]") {
  json info = {{"target_bytes", 128ull << 20}, {"actual_bytes", 96ull << 20},
               {"memory_bytes", 256ull << 20}, {"guest_memory_bytes", 160ull << 20},
               {"deflate_on_oom", true},       {"stats_interval_s", 5},
               {"free_page_reporting", false}};
  CHECK(format_balloon(info) ==
        "target:              128 MiB\n"
        "actual:              96 MiB\n"
        "guest memory:        160 MiB of 256 MiB\n"
        "deflate on OOM:      yes\n"
        "stats interval:      5s\n"
        "free page reporting: no\n");
  info["stats_interval_s"] = 0;
  CHECK(format_balloon(info).find("stats interval:      off\n") != std::string::npos);

  json hostile = {{"target_bytes", -1}, {"memory_bytes", "x"}, {"deflate_on_oom", "\x1b[2J"}};
  std::string text = format_balloon(hostile);
  CHECK(text.find('\x1b') == std::string::npos);
  CHECK(text.find("target:              -1\n") != std::string::npos);
  CHECK(text.find("guest memory:        -\n") != std::string::npos);
  CHECK(text.find("deflate on OOM:      -\n") != std::string::npos);
  CHECK_FALSE(format_balloon(json::array()).empty());
}

TEST_CASE("petrelctl: balloon stats with units, nulls and the age", "[petrelctl][balloon]") {
  json stats = {{"swap_in", 0},
                {"swap_out", nullptr},
                {"major_faults", 7},
                {"minor_faults", 1234},
                {"free_memory", 100ull << 20},
                {"total_memory", 250ull << 20},
                {"available_memory", 3ull << 29},
                {"disk_caches", nullptr},
                {"hugetlb_allocations", nullptr},
                {"hugetlb_failures", 0},
                {"updated_at", "2027-01-15T08:00:00.000Z"},
                {"age_seconds", 4.25},
                {"unknown_tags", 3}};
  CHECK(format_balloon_stats(stats) ==
        "free memory:         100 MiB\n"
        "available memory:    1.5 GiB\n"
        "total memory:        250 MiB\n"
        "disk caches:         -\n"
        "swapped in:          0 B\n"
        "swapped out:         -\n"
        "major faults:        7\n"
        "minor faults:        1234\n"
        "hugetlb allocations: -\n"
        "hugetlb failures:    0\n"
        "updated:             2027-01-15T08:00:00.000Z (4s ago)\n"
        "unknown tags:        3\n");
  stats["updated_at"] = nullptr;
  stats["age_seconds"] = nullptr;
  CHECK(format_balloon_stats(stats).find("updated:             never\n") != std::string::npos);
  CHECK(format_balloon_stats(json("x")).find("free memory:         -\n") != std::string::npos);
}
