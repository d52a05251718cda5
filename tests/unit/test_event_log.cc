#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <thread>
#include <vector>

#include "vmm/event_log.h"

using petrel::EventLog;
using petrel::VmControl;
using petrel::VmEvent;

TEST_CASE("events are numbered from 1 and kept for late subscribers", "[event_log]") {
  EventLog log;
  CHECK(log.last_seq() == 0);
  CHECK(log.publish("state", {{"to", "running"}}) == 1);
  CHECK(log.publish("reset", {{"initiator", "api"}}) == 2);
  std::vector<VmEvent> seen;
  auto sub = log.subscribe(0, [&](const VmEvent& e) { seen.push_back(e); });
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].seq == 1);
  CHECK(seen[0].type == "state");
  CHECK(seen[1].data["initiator"] == "api");
  log.publish("panic", {});
  REQUIRE(seen.size() == 3);
  CHECK(seen[2].seq == 3);
  auto only_new = log.subscribe(UINT64_MAX, [&](const VmEvent& e) { seen.push_back(e); });
  CHECK(seen.size() == 3);
  auto after_two = log.history(2);
  REQUIRE(after_two.size() == 1);
  CHECK(after_two[0].type == "panic");
}

TEST_CASE("a destroyed subscription gets nothing more, even after the log", "[event_log]") {
  int calls = 0;
  std::unique_ptr<petrel::EventSubscription> sub;
  {
    EventLog log;
    sub = log.subscribe(0, [&](const VmEvent&) { ++calls; });
    log.publish("state", {});
    CHECK(calls == 1);
    sub.reset();
    log.publish("state", {});
    CHECK(calls == 1);
    sub = log.subscribe(UINT64_MAX, [&](const VmEvent&) { ++calls; });
  }
  sub.reset();  // the log is gone: must not touch it
  CHECK(calls == 1);
}

TEST_CASE("history is bounded and seq keeps counting", "[event_log]") {
  EventLog log;
  for (size_t i = 0; i < VmControl::kEventHistory + 10; ++i) {
    log.publish("state", {});
  }
  auto all = log.history(0);
  REQUIRE(all.size() == VmControl::kEventHistory);
  CHECK(all.front().seq == 11);
  CHECK(all.back().seq == VmControl::kEventHistory + 10);
}

TEST_CASE("concurrent publishers: every subscriber sees every seq once, in order", "[event_log]") {
  EventLog log;
  std::vector<uint64_t> seen;
  auto sub = log.subscribe(UINT64_MAX, [&](const VmEvent& e) { seen.push_back(e.seq); });
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 250; ++i) {
          log.publish("state", {});
        }
      });
    }
  }
  REQUIRE(seen.size() == 1000);
  for (size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i] == i + 1);
  }
}
