#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vmm/lifecycle.h"

using petrel::ErrorCode;
using petrel::kVmActionCount;
using petrel::kVmStateCount;
using petrel::Lifecycle;
using petrel::next_vm_state;
using petrel::VmAction;
using petrel::VmState;
using petrel::VmTransition;

namespace {

constexpr std::array<VmState, kVmStateCount> kAllStates{
    VmState::kCreated,      VmState::kRunning,   VmState::kPaused,
    VmState::kShuttingDown, VmState::kShutOff,   VmState::kCrashed,
    VmState::kEmpty,        VmState::kReceiving, VmState::kMigrated,
};

constexpr std::array<VmAction, kVmActionCount> kAllActions{
    VmAction::kStart,         VmAction::kPause,        VmAction::kResume,
    VmAction::kShutdown,      VmAction::kReboot,       VmAction::kStop,
    VmAction::kGuestStopped,  VmAction::kGuestCrashed, VmAction::kShutdownTimeout,
    VmAction::kRestore,       VmAction::kReceive,      VmAction::kReceived,
    VmAction::kReceiveFailed, VmAction::kMigrated,
};

// The specification, written out independently of the table in lifecycle.h.
const std::vector<VmTransition> kExpected{
    {VmState::kCreated, VmAction::kStart, VmState::kRunning},
    {VmState::kCreated, VmAction::kStop, VmState::kShutOff},
    {VmState::kRunning, VmAction::kPause, VmState::kPaused},
    {VmState::kRunning, VmAction::kShutdown, VmState::kShuttingDown},
    {VmState::kRunning, VmAction::kReboot, VmState::kRunning},
    {VmState::kRunning, VmAction::kStop, VmState::kShutOff},
    {VmState::kRunning, VmAction::kGuestStopped, VmState::kShutOff},
    {VmState::kRunning, VmAction::kGuestCrashed, VmState::kCrashed},
    {VmState::kPaused, VmAction::kResume, VmState::kRunning},
    {VmState::kPaused, VmAction::kStop, VmState::kShutOff},
    {VmState::kPaused, VmAction::kGuestStopped, VmState::kShutOff},
    {VmState::kPaused, VmAction::kGuestCrashed, VmState::kCrashed},
    {VmState::kShuttingDown, VmAction::kStop, VmState::kShutOff},
    {VmState::kShuttingDown, VmAction::kGuestStopped, VmState::kShutOff},
    {VmState::kShuttingDown, VmAction::kShutdownTimeout, VmState::kShutOff},
    {VmState::kShuttingDown, VmAction::kGuestCrashed, VmState::kCrashed},
    {VmState::kRunning, VmAction::kMigrated, VmState::kMigrated},
    {VmState::kPaused, VmAction::kMigrated, VmState::kMigrated},
    {VmState::kEmpty, VmAction::kRestore, VmState::kPaused},
    {VmState::kEmpty, VmAction::kReceive, VmState::kReceiving},
    {VmState::kEmpty, VmAction::kStop, VmState::kShutOff},
    {VmState::kReceiving, VmAction::kReceived, VmState::kRunning},
    {VmState::kReceiving, VmAction::kReceiveFailed, VmState::kEmpty},
    {VmState::kReceiving, VmAction::kStop, VmState::kShutOff},
};

}  // namespace

TEST_CASE("lifecycle names are the operator names", "[lifecycle]") {
  CHECK(to_string(VmState::kCreated) == "created");
  CHECK(to_string(VmState::kRunning) == "running");
  CHECK(to_string(VmState::kPaused) == "paused");
  CHECK(to_string(VmState::kShuttingDown) == "shutting-down");
  CHECK(to_string(VmState::kShutOff) == "shut-off");
  CHECK(to_string(VmState::kCrashed) == "crashed");
  CHECK(to_string(VmState::kEmpty) == "empty");
  CHECK(to_string(VmState::kReceiving) == "receiving");
  CHECK(to_string(VmState::kMigrated) == "migrated");
  CHECK(to_string(VmAction::kReceiveFailed) == "receive-failed");
  CHECK(to_string(VmAction::kStart) == "start");
  CHECK(to_string(VmAction::kShutdown) == "shutdown");
  CHECK(to_string(VmAction::kStop) == "stop");
  CHECK(to_string(VmAction::kGuestStopped) == "guest-stopped");
  CHECK(to_string(VmAction::kGuestCrashed) == "guest-crashed");
  CHECK(to_string(VmAction::kShutdownTimeout) == "shutdown-timeout");
}

TEST_CASE("the transition table is the specified one", "[lifecycle]") {
  const auto table = Lifecycle::transitions();
  CHECK(table.size() == kExpected.size());
  for (const auto& t : kExpected) {
    CAPTURE(to_string(t.from), to_string(t.action));
    CHECK(std::count(table.begin(), table.end(), t) == 1);
  }
}

TEST_CASE("every legal transition moves to its target", "[lifecycle]") {
  for (const auto& t : kExpected) {
    CAPTURE(to_string(t.from), to_string(t.action));
    Lifecycle lifecycle(t.from);
    auto result = lifecycle.apply(t.action);
    REQUIRE(result.ok());
    CHECK(*result == t);
    CHECK(lifecycle.state() == t.to);
  }
}

TEST_CASE("every other (state, action) pair is refused and changes nothing", "[lifecycle]") {
  int refused = 0;
  for (VmState from : kAllStates) {
    for (VmAction action : kAllActions) {
      const bool legal = std::any_of(kExpected.begin(), kExpected.end(), [&](const auto& t) {
        return t.from == from && t.action == action;
      });
      CHECK(next_vm_state(from, action).has_value() == legal);
      if (legal) {
        continue;
      }
      CAPTURE(to_string(from), to_string(action));
      Lifecycle lifecycle(from);
      auto result = lifecycle.apply(action);
      REQUIRE_FALSE(result.ok());
      CHECK(result.error().code() == ErrorCode::kState);
      CHECK(result.error().message() == "cannot " + std::string(to_string(action)) +
                                            ": the VM is " + std::string(to_string(from)));
      CHECK(lifecycle.state() == from);
      ++refused;
    }
  }
  CHECK(refused == static_cast<int>(kVmStateCount * kVmActionCount - kExpected.size()));
}

TEST_CASE("shut-off and crashed are terminal", "[lifecycle]") {
  for (VmState from : {VmState::kShutOff, VmState::kCrashed}) {
    for (VmAction action : kAllActions) {
      CHECK_FALSE(next_vm_state(from, action).has_value());
    }
  }
}

TEST_CASE("allowed() predicts apply() without changing the state", "[lifecycle]") {
  Lifecycle lifecycle;
  auto ok = lifecycle.allowed(VmAction::kStart);
  REQUIRE(ok);
  CHECK(*ok == VmState::kRunning);
  CHECK(lifecycle.state() == VmState::kCreated);
  auto refused = lifecycle.allowed(VmAction::kPause);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code() == ErrorCode::kState);
  CHECK(refused.error().message() == "cannot pause: the VM is created");
}

TEST_CASE("concurrent apply keeps exactly one winner per transition", "[lifecycle]") {
  for (int round = 0; round < 200; ++round) {
    Lifecycle lifecycle(VmState::kRunning);
    std::atomic<int> paused{0};
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        if (lifecycle.apply(VmAction::kPause)) {
          paused.fetch_add(1);
        }
      });
    }
    threads.clear();
    CHECK(paused.load() == 1);
    CHECK(lifecycle.state() == VmState::kPaused);
  }
}
