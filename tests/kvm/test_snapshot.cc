// Snapshot and restore end to end: the dirtier guest (checksummed pages and a counter in guest
// RAM) paused, saved through the API, and brought back by `petrel restore DIR` and by the API
// of a `petrel serve`; damaged snapshots refused; pause/resume under load.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "api_harness.h"
#include "petrel_process.h"

using Catch::Matchers::Contains;
using nlohmann::json;
using petrel::test::ApiPetrel;

namespace {

constexpr auto kWait = std::chrono::seconds(30);
const std::vector<std::string> kDirtier = {"--cmdline", "pages=2048 rate=64 every=500", "--memory",
                                           "128M"};

struct Pass {
  uint64_t pass = 0;
  uint64_t counter = 0;
  uint64_t bad = 0;
};

std::vector<Pass> passes(const std::string& out) {
  static const std::regex line(R"(dirtier pass=(\d+) counter=(\d+) verified=(\d+) bad=(\d+)\n)");
  std::vector<Pass> found;
  for (auto it = std::sregex_iterator(out.begin(), out.end(), line); it != std::sregex_iterator();
       ++it) {
    found.push_back({std::stoull((*it)[1]), std::stoull((*it)[2]), std::stoull((*it)[4])});
  }
  return found;
}

// Waits until the console shows at least `count` verification lines; returns them.
std::vector<Pass> wait_passes(petrel::test::BackgroundProcess& p, size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  std::vector<Pass> got;
  while (std::chrono::steady_clock::now() < deadline) {
    got = passes(p.out());
    if (got.size() >= count || !p.running()) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return got;
}

void check_all_good(const std::vector<Pass>& got) {
  for (const auto& p : got) {
    INFO("pass " << p.pass);
    CHECK(p.bad == 0);
  }
}

// Runs dirtier, pauses it after a few verifications, snapshots it to `dir`; returns the last
// verification the source printed.
Pass make_snapshot(const std::filesystem::path& dir) {
  ApiPetrel source("dirtier", kDirtier);
  REQUIRE(wait_passes(source.process(), 3).size() >= 3);
  REQUIRE(source.call("PUT", "/v1/vm/pause").status == 200);
  auto reply = source.call("PUT", "/v1/vm/snapshot", json{{"path", dir.string()}}.dump());
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  auto body = reply.json();
  CHECK(body["path"] == dir.string());
  // Sparse: the guest touched about 10 MiB of its 128 MiB.
  CHECK(body["memory_bytes_written"].get<uint64_t>() > (8u << 20));
  CHECK(body["memory_bytes_written"].get<uint64_t>() < (64u << 20));
  CHECK(std::filesystem::file_size(dir / "memory") == (128u << 20));
  auto before = passes(source.process().out());
  REQUIRE(!before.empty());
  check_all_good(before);
  REQUIRE(source.call("PUT", "/v1/vm/stop").status == 200);
  return before.back();
}

void check_continues(petrel::test::BackgroundProcess& p, const Pass& last) {
  auto after = wait_passes(p, 3);
  INFO("log:\n" << p.err());
  REQUIRE(after.size() >= 3);
  check_all_good(after);
  // The restored guest goes on from where it was saved: no pass repeated, the counter
  // continuing from the saved value (it advances by rate = 64 per pass).
  CHECK(after.front().pass > last.pass);
  CHECK(after.front().counter == last.counter + 64 * (after.front().pass - last.pass));
}

std::filesystem::path scratch(const std::string& name) {
  std::string templ = "/tmp/petrel-snap-" + name + "-XXXXXX";
  REQUIRE(::mkdtemp(templ.data()) != nullptr);
  return templ;
}

}  // namespace

TEST_CASE("snapshot: a paused guest saved through the API goes on after petrel restore",
          "[snapshot]") {
  auto dir = scratch("cli");
  const Pass last = make_snapshot(dir / "snap");
  ApiPetrel restored(ApiPetrel::Command{{"restore", (dir / "snap").string()}});
  CHECK(restored.state() == "running");
  check_continues(restored.process(), last);
  auto info = restored.call("GET", "/v1/vm").json();
  CHECK(info["memory_bytes"] == (128u << 20));
  std::filesystem::remove_all(dir);
}

TEST_CASE("snapshot: petrel serve restores through the API, paused or running", "[snapshot]") {
  auto dir = scratch("api");
  const Pass last = make_snapshot(dir / "snap");
  ApiPetrel host(ApiPetrel::Command{{"serve"}});
  CHECK(host.state() == "empty");
  // Refusals first: not a snapshot, relative path, snapshot while empty.
  CHECK(host.call("PUT", "/v1/vm/restore", json{{"path", dir.string()}}.dump()).status >= 400);
  CHECK(host.call("PUT", "/v1/vm/restore", json{{"path", "snap"}}.dump()).status == 400);
  CHECK(host.call("PUT", "/v1/vm/snapshot", json{{"path", (dir / "x").string()}}.dump()).status ==
        409);
  CHECK(host.state() == "empty");

  auto reply = host.call("PUT", "/v1/vm/restore",
                         json{{"path", (dir / "snap").string()}, {"paused", true}}.dump());
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  CHECK(host.state() == "paused");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(passes(host.process().out()).empty());  // paused: not a single pass yet
  REQUIRE(host.call("PUT", "/v1/vm/resume").status == 200);
  check_continues(host.process(), last);
  // A second restore into a petrel that has a VM is refused.
  CHECK(host.call("PUT", "/v1/vm/restore", json{{"path", (dir / "snap").string()}}.dump()).status ==
        409);
  std::filesystem::remove_all(dir);
}

TEST_CASE("snapshot: a corrupt, truncated, wrong-version or incomplete snapshot is refused",
          "[snapshot]") {
  auto dir = scratch("bad");
  const auto good = dir / "snap";
  make_snapshot(good);
  auto restore_fails = [&](const std::filesystem::path& snap, const std::string& why) {
    auto r = petrel::test::run_process(petrel::test::petrel_binary(), {"restore", snap.string()});
    INFO(why << ": exit " << r.exit_code << "\n" << r.err);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Contains(why));
  };
  auto copy_of = [&](const std::string& name) {
    auto to = dir / name;
    std::filesystem::copy(good, to, std::filesystem::copy_options::recursive);
    return to;
  };
  auto poke = [](const std::filesystem::path& file, std::streamoff at, char value) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(at);
    f.put(value);
  };
  const auto state_size = static_cast<std::streamoff>(std::filesystem::file_size(good / "state"));

  auto corrupt = copy_of("corrupt");
  poke(corrupt / "state", state_size / 2, '\x5a');
  restore_fails(corrupt, "corrupt");

  auto truncated = copy_of("truncated");
  std::filesystem::resize_file(truncated / "state", static_cast<uintmax_t>(state_size / 3));
  restore_fails(truncated, "truncated");

  auto version = copy_of("version");
  poke(version / "state", 8, '\x07');  // the u32 version after the 8-byte magic
  restore_fails(version, "version");

  auto no_memory = copy_of("no-memory");
  std::filesystem::remove(no_memory / "memory");
  restore_fails(no_memory, "memory");

  auto short_memory = copy_of("short-memory");
  std::filesystem::resize_file(short_memory / "memory", 64u << 20);
  restore_fails(short_memory, "memory");

  restore_fails(dir / "nonexistent", "no such directory");
  std::filesystem::remove_all(dir);
}

TEST_CASE("snapshot: pause and resume under load keep the guest's memory intact", "[snapshot]") {
  ApiPetrel vm("dirtier", kDirtier);
  REQUIRE(wait_passes(vm.process(), 2).size() >= 2);
  for (int i = 0; i < 10; ++i) {
    REQUIRE(vm.call("PUT", "/v1/vm/pause").status == 200);
    const auto frozen = passes(vm.process().out()).size();
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    CHECK(passes(vm.process().out()).size() == frozen);
    REQUIRE(vm.call("PUT", "/v1/vm/resume").status == 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const auto before = passes(vm.process().out()).size();
  auto after = wait_passes(vm.process(), before + 3);
  REQUIRE(after.size() >= before + 3);
  check_all_good(after);
  for (size_t i = 1; i < after.size(); ++i) {
    CHECK(after[i].pass > after[i - 1].pass);
  }
}
