#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>
#include <vector>

#include "vmm/stop_latch.h"

using petrel::exit_status_for;
using petrel::StopKind;
using petrel::StopLatch;
using petrel::StopReason;

TEST_CASE("the first stop request wins", "[stop]") {
  StopLatch latch;
  CHECK_FALSE(latch.stopped());
  CHECK_FALSE(latch.peek().has_value());

  CHECK(latch.request({StopKind::kGuestExit, 3, "guest exited with status 3"}));
  CHECK(latch.stopped());
  CHECK_FALSE(latch.request({StopKind::kHostError, 0, "too late"}));
  CHECK_FALSE(latch.request({StopKind::kPowerOff, 0, ""}));

  auto reason = latch.peek();
  REQUIRE(reason.has_value());
  CHECK(reason->kind == StopKind::kGuestExit);
  CHECK(reason->status == 3);
  CHECK(reason->message == "guest exited with status 3");
  CHECK(latch.wait().kind == StopKind::kGuestExit);
}

TEST_CASE("wait returns a stop requested from another thread", "[stop]") {
  StopLatch latch;
  std::thread requester([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    latch.request({StopKind::kSignal, 15, "SIGTERM"});
  });
  StopReason reason = latch.wait();
  requester.join();
  CHECK(reason.kind == StopKind::kSignal);
  CHECK(reason.status == 15);
  CHECK(reason.message == "SIGTERM");
}

TEST_CASE("of racing requests exactly one wins", "[stop]") {
  StopLatch latch;
  std::atomic<int> winners = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      if (latch.request({StopKind::kGuestExit, static_cast<uint8_t>(i), ""})) {
        ++winners;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(winners == 1);
  CHECK(latch.stopped());
}

TEST_CASE("exit status for each kind of stop", "[stop]") {
  CHECK(exit_status_for({StopKind::kPowerOff, 0, ""}) == 0);
  CHECK(exit_status_for({StopKind::kReset, 0, ""}) == 0);
  CHECK(exit_status_for({StopKind::kGuestExit, 0, ""}) == 0);
  CHECK(exit_status_for({StopKind::kGuestExit, 42, ""}) == 42);
  CHECK(exit_status_for({StopKind::kGuestExit, 255, ""}) == 255);
  CHECK(exit_status_for({StopKind::kSignal, 2, ""}) == 130);
  CHECK(exit_status_for({StopKind::kSignal, 15, ""}) == 143);
  CHECK(exit_status_for({StopKind::kTripleFault, 0, ""}) == 1);
  CHECK(exit_status_for({StopKind::kGuestError, 7, ""}) == 1);
  CHECK(exit_status_for({StopKind::kHostError, 0, ""}) == 1);
}
