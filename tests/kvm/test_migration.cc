// Live migration end to end (docs/migration.md, docs/api.md): the dirtier guest moved between
// two real petrel processes over unix: and tcp: through curl and petrelctl, the faults that must
// leave the source running with its memory intact (a killed destination, a destination that
// hangs up, a destination speaking another protocol version, a cancel), and the refusals.
//
// Every test drives real petrel binaries on /dev/kvm; the fake destinations are sockets in
// this process that speak just enough of protocol v1 (little-endian frames, 16-byte header).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api_harness.h"

using Catch::Matchers::Contains;
using petrel::test::ApiPetrel;
using petrel::test::BackgroundProcess;
using petrel::test::curl_api;
using petrel::test::EventFollower;
using petrel::test::HttpReply;
using Json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// The small guest: 8192 pages rewritten 64 at a time, a report every 500 passes.
const std::vector<std::string> kSmallGuest{"--cmdline", "pages=8192 rate=64 every=500"};
// The big guest: 512 MiB of data pages in 1 GiB, so round 0 alone takes seconds here.
const std::vector<std::string> kBigGuest{"--memory", "1G", "--cmdline",
                                         "pages=131072 rate=64 every=2000"};

struct Report {
  uint64_t pass, counter, verified, bad;
};

// Every complete "dirtier pass=P counter=C verified=N bad=B" line of a console, in order.
std::vector<Report> reports(const std::string& out) {
  static const std::regex line(R"(dirtier pass=(\d+) counter=(\d+) verified=(\d+) bad=(\d+)\n)");
  std::vector<Report> found;
  for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
    found.push_back({std::stoull((*it)[1]), std::stoull((*it)[2]), std::stoull((*it)[3]),
                     std::stoull((*it)[4])});
  }
  return found;
}

// Waits until `process`'s console holds a report with a pass above `after`; all reports.
std::vector<Report> wait_report_after(BackgroundProcess& process, uint64_t after,
                                      std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto found = reports(process.out());
    if (!found.empty() && found.back().pass > after) {
      return found;
    }
    std::this_thread::sleep_for(50ms);
  }
  INFO("console:\n" << process.out() << "\nlog:\n" << process.err());
  FAIL("no dirtier report after pass " << after);
  return {};
}

// Every report of a console is clean: all `pages` verified, none bad, counters rising.
void check_clean(const std::vector<Report>& found, uint64_t pages) {
  for (size_t i = 0; i < found.size(); ++i) {
    INFO("report " << i << ": pass=" << found[i].pass);
    CHECK(found[i].bad == 0);
    CHECK(found[i].verified == pages);
    CHECK(found[i].counter == found[i].pass * 64);
    if (i > 0) {
      CHECK(found[i].pass > found[i - 1].pass);
    }
  }
}

// A petrel started without a VM: `petrel serve`, or `petrel receive ADDR` when `receive_address`
// is given; its scratch directory also holds the migration socket mig.sock.
std::unique_ptr<ApiPetrel> empty_petrel(const std::string& receive_address = "") {
  ApiPetrel::Command command{{"serve"}};
  if (!receive_address.empty()) {
    command.args = {"receive", receive_address};
  }
  return std::make_unique<ApiPetrel>(command);
}

std::string migration_address(const ApiPetrel& destination) {
  return "unix:" + (destination.dir() / "mig.sock").string();
}

// PUT /v1/migration/receive on `migration_address()`: 202, state receiving.
void start_receiving(const ApiPetrel& destination) {
  auto reply = destination.call("PUT", "/v1/migration/receive",
                                Json{{"listen", migration_address(destination)}}.dump());
  INFO(reply.body);
  REQUIRE(reply.status == 202);
  CHECK(destination.state() == "receiving");
}

// Polls GET /v1/migration on `socket` until `done(status)`; the last status. FAILs after
// `timeout` or when nobody answers any more.
Json wait_migration(const std::string& socket, const std::function<bool(const Json&)>& done,
                    std::chrono::seconds timeout, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Json status;
  while (std::chrono::steady_clock::now() < deadline) {
    auto reply = curl_api(socket, "GET", "/v1/migration");
    INFO("waiting for " << what << "; last status " << status.dump());
    REQUIRE(reply.status == 200);
    status = reply.json();
    if (done(status)) {
      return status;
    }
    std::this_thread::sleep_for(50ms);
  }
  FAIL("timed out waiting for " << what << "; last status " << status.dump());
  return status;
}

bool phase_is(const Json& status, const char* phase) {
  return status.at("phase") == phase;
}

// A migration that ended and whose final status is in place (docs/api.md: `total_ms` and
// `downtime_ms` are numbers once completed, `error` is a string once failed or cancelled).
// GET /v1/migration can show the sender's or receiver's end phase a moment before the
// controller stored the final status (error or total_ms still null then): waiting for the
// whole status compares against the final one.
bool settled(const Json& status) {
  if (phase_is(status, "completed")) {
    return status.at("total_ms").is_number();
  }
  return (phase_is(status, "failed") || phase_is(status, "cancelled")) &&
         status.at("error").is_string();
}

Json wait_settled(const std::string& socket, std::chrono::seconds timeout,
                  const std::string& what) {
  return wait_migration(socket, settled, timeout, what);
}

// PUT /v1/migration/send to `destination` with extra fields; the reply.
HttpReply send_to(const ApiPetrel& source, const std::string& destination, Json body = {}) {
  body["destination"] = destination;
  return source.call("PUT", "/v1/migration/send", body.dump());
}

// After a failed or cancelled migration: the source answers running, its last migration has
// `phase` and an error, and the guest goes on with clean reports after the fault.
void check_source_intact(ApiPetrel& source, const char* phase, uint64_t pages,
                         const std::string& error_part) {
  CHECK(source.state() == "running");
  auto status = source.call("GET", "/v1/migration").json();
  INFO("source status " << status.dump());
  CHECK(status.at("role") == "send");
  CHECK(status.at("phase") == phase);
  REQUIRE(status.at("error").is_string());
  CHECK_THAT(status.at("error").get<std::string>(), Contains(error_part));
  const uint64_t last = reports(source.process().out()).back().pass;
  auto found = wait_report_after(source.process(), last, 60s);
  check_clean(found, pages);
  CHECK(source.process().running());
}

// ---- fake destinations ----

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
  Fd(Fd&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  Fd& operator=(Fd&&) = delete;
};

// A Unix stream socket listening at `path`.
Fd listen_unix(const std::string& path) {
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  REQUIRE(::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(s.fd, 4) == 0);
  return s;
}

Fd accept_within(const Fd& listener, std::chrono::milliseconds timeout) {
  pollfd p{listener.fd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, static_cast<int>(timeout.count())) == 1);
  Fd c(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(c.fd >= 0);
  return c;
}

// Exactly `n` bytes from `fd` within 10 s, or FAIL.
std::vector<uint8_t> read_exact(const Fd& fd, size_t n) {
  std::vector<uint8_t> out(n);
  size_t got = 0;
  while (got < n) {
    pollfd p{fd.fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10000) == 1);
    ssize_t r = ::read(fd.fd, out.data() + got, n - got);
    REQUIRE(r > 0);
    got += static_cast<size_t>(r);
  }
  return out;
}

uint64_t le(const std::vector<uint8_t>& b, size_t at, size_t size) {
  uint64_t v = 0;
  for (size_t i = 0; i < size; ++i) {
    v |= static_cast<uint64_t>(b.at(at + i)) << (8 * i);
  }
  return v;
}

void put_le(std::vector<uint8_t>& b, uint64_t v, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
}

struct Frame {
  uint32_t type;
  std::vector<uint8_t> payload;
};

constexpr uint32_t kHello = 1, kHelloAck = 2, kError = 3;

// One frame; the header is checked the way docs/migration.md asks of a receiver.
Frame read_frame(const Fd& fd) {
  auto header = read_exact(fd, 16);
  Frame f{static_cast<uint32_t>(le(header, 0, 4)), {}};
  CHECK(le(header, 4, 4) == 0);
  const uint64_t length = le(header, 8, 8);
  REQUIRE(length <= 64 * 1024);
  f.payload = read_exact(fd, length);
  return f;
}

void write_frame(const Fd& fd, uint32_t type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> bytes;
  put_le(bytes, type, 4);
  put_le(bytes, 0, 4);
  put_le(bytes, payload.size(), 8);
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  REQUIRE(::write(fd.fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

// A HELLO / HELLO_ACK payload naming `version`.
std::vector<uint8_t> hello_payload(uint32_t version) {
  const std::string name = "fake-destination";
  std::vector<uint8_t> p{'P', 'E', 'T', 'R', 'E', 'L', 'M', 'G'};
  put_le(p, version, 4);
  put_le(p, 4096, 4);
  put_le(p, name.size(), 4);
  p.insert(p.end(), name.begin(), name.end());
  return p;
}

// Reads the source's HELLO and checks it is protocol version 1 with 4096-byte pages.
void expect_hello_v1(const Fd& conn) {
  Frame hello = read_frame(conn);
  REQUIRE(hello.type == kHello);
  REQUIRE(hello.payload.size() >= 20);
  CHECK(std::string(hello.payload.begin(), hello.payload.begin() + 8) == "PETRELMG");
  CHECK(le(hello.payload, 8, 4) == 1);
  CHECK(le(hello.payload, 12, 4) == 4096);
  CHECK(hello.payload.size() == 20 + le(hello.payload, 16, 4));
}

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_tcp_port() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(s.fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  return ntohs(addr.sin_port);
}

// A source petrel whose guest is past pass 0 (set-up done, rewriting pages).
std::unique_ptr<ApiPetrel> start_source(const std::vector<std::string>& guest) {
  auto source = std::make_unique<ApiPetrel>("dirtier", guest);
  wait_report_after(source->process(), 0, 60s);
  return source;
}

// The destination took the guest over: running, migration completed, and its console goes
// on from where the source's stopped (higher pass and counter, every page verified).
void check_destination_continues(ApiPetrel& destination, const std::vector<Report>& before,
                                 uint64_t pages) {
  REQUIRE_FALSE(before.empty());
  auto status = wait_settled(destination.socket(), 30s, "the destination to finish");
  CHECK(status.at("role") == "receive");
  CHECK(status.at("phase") == "completed");
  CHECK(status.at("error").is_null());
  CHECK(destination.state() == "running");
  auto after = wait_report_after(destination.process(), before.back().pass, 60s);
  INFO("last source report pass=" << before.back().pass);
  CHECK(after.front().pass > before.back().pass);
  CHECK(after.front().counter > before.back().counter);
  check_clean(after, pages);
}

}  // namespace

TEST_CASE("migration: the dirtier moves over unix: while it runs", "[migration]") {
  auto source = start_source(kSmallGuest);
  auto destination = empty_petrel();
  start_receiving(*destination);
  EventFollower events(source->socket(), source->dir());
  auto reply = send_to(*source, migration_address(*destination));
  INFO(reply.body);
  REQUIRE(reply.status == 202);
  CHECK(reply.json().at("role") == "send");
  // Started, not idle: the thread may already be past connecting.
  CHECK_THAT(reply.json().at("phase").get<std::string>(),
             Catch::Matchers::Equals("connecting") || Catch::Matchers::Equals("precopy"));

  auto exit = source->process().wait_exit(60s);
  INFO("source log:\n" << source->process().err());
  REQUIRE(exit.has_value());
  CHECK(*exit == 0);
  auto before = reports(source->process().out());
  check_clean(before, 8192);
  check_destination_continues(*destination, before, 8192);

  // The source's own account, from its event stream (it has exited by now).
  CHECK(events.wait_for("state", {{"to", "migrated"}}, 5s));
  REQUIRE(events.wait_for("migration", {{"role", "send"}, {"phase", "completed"}}, 5s));
  for (const auto& event : events.lines()) {
    if (event.value("type", "") == "migration" && event["data"].value("phase", "") == "completed") {
      INFO(event.dump());
      CHECK(event["data"].at("rounds").get<uint64_t>() >= 2);
      CHECK(event["data"].at("bytes").get<uint64_t>() >= 8192ull * 4096);
      CHECK(event["data"].at("downtime_ms").get<uint64_t>() <=
            event["data"].at("total_ms").get<uint64_t>());
    }
  }
}

TEST_CASE("migration: petrelctl migrate --wait over tcp: to petrel receive", "[migration]") {
  auto source = start_source(kSmallGuest);
  const std::string address = "tcp:127.0.0.1:" + std::to_string(free_tcp_port());
  auto destination = empty_petrel(address);
  CHECK(destination->state() == "receiving");

  // --downtime 1 never converges while the guest dirties pages: max_rounds ends pre-copy.
  auto ctl = petrel::test::petrelctl({"-s", source->socket(), "migrate", address, "--downtime", "1",
                                      "--max-rounds", "3", "--wait"},
                                     90s);
  INFO("petrelctl stdout:\n" << ctl.out << "\nstderr:\n" << ctl.err);
  CHECK(ctl.exit_code == 0);
  CHECK(std::regex_search(ctl.out, std::regex(R"(migrated in \d+ ms, downtime \d+ ms\n$)")));
  auto exit = source->process().wait_exit(30s);
  REQUIRE(exit.has_value());
  CHECK(*exit == 0);
  check_destination_continues(*destination, reports(source->process().out()), 8192);
  // Three pre-copy rounds and the final one arrived.
  auto status = destination->call("GET", "/v1/migration").json();
  INFO(status.dump());
  CHECK(status.at("round") == 4);
  auto ctl_status = petrel::test::petrelctl({"-s", destination->socket(), "migrate-status"});
  CHECK(ctl_status.exit_code == 0);
  CHECK_THAT(ctl_status.out, Contains("completed"));
}

TEST_CASE("migration: a destination killed mid-transfer leaves the source running", "[migration]") {
  auto source = start_source(kBigGuest);
  auto destination = empty_petrel();
  start_receiving(*destination);
  REQUIRE(send_to(*source, migration_address(*destination)).status == 202);
  wait_migration(
      source->socket(),
      [](const Json& s) { return phase_is(s, "precopy") && s.at("pages").get<uint64_t>() > 0; },
      30s, "pre-copy to send pages");
  REQUIRE(::kill(destination->process().pid(), SIGKILL) == 0);
  auto status = wait_settled(source->socket(), 30s, "the source to notice");
  INFO(status.dump());
  CHECK(status.at("phase") == "failed");
  check_source_intact(*source, "failed", 131072, "precopy");
}

TEST_CASE("migration: a destination that hangs up at once leaves the source running",
          "[migration]") {
  auto source = start_source(kSmallGuest);
  const std::string path = (source->dir() / "fake.sock").string();
  Fd listener = listen_unix(path);
  REQUIRE(send_to(*source, "unix:" + path).status == 202);
  { Fd conn = accept_within(listener, 10s); }
  auto status = wait_settled(source->socket(), 30s, "the source to fail");
  CHECK(status.at("phase") == "failed");
  check_source_intact(*source, "failed", 8192, "connection closed by peer");
}

TEST_CASE("migration: a destination of another protocol version is refused", "[migration]") {
  auto source = start_source(kSmallGuest);
  const std::string path = (source->dir() / "fake.sock").string();
  Fd listener = listen_unix(path);

  SECTION("HELLO_ACK naming version 2") {
    REQUIRE(send_to(*source, "unix:" + path).status == 202);
    Fd conn = accept_within(listener, 10s);
    expect_hello_v1(conn);
    write_frame(conn, kHelloAck, hello_payload(2));
    // The source answers ERROR naming both versions, then stops.
    Frame error = read_frame(conn);
    CHECK(error.type == kError);
    const std::string text(error.payload.begin(), error.payload.end());
    INFO("ERROR text: " << text);
    CHECK_THAT(text, Contains("version 2"));
    CHECK_THAT(text, Contains("version 1"));
    auto status = wait_settled(source->socket(), 30s, "the source to fail");
    CHECK(status.at("phase") == "failed");
    check_source_intact(*source, "failed", 8192, text);
  }
  SECTION("ERROR after HELLO") {
    REQUIRE(send_to(*source, "unix:" + path).status == 202);
    Fd conn = accept_within(listener, 10s);
    expect_hello_v1(conn);
    const std::string why = "unsupported protocol version 1 (this side speaks version 2)";
    write_frame(conn, kError, std::vector<uint8_t>(why.begin(), why.end()));
    auto status = wait_settled(source->socket(), 30s, "the source to fail");
    CHECK(status.at("phase") == "failed");
    check_source_intact(*source, "failed", 8192, why);
  }
}

TEST_CASE("migration: cancel during pre-copy; the destination can then receive again",
          "[migration]") {
  auto source = start_source(kBigGuest);
  auto destination = empty_petrel();
  start_receiving(*destination);
  REQUIRE(send_to(*source, migration_address(*destination)).status == 202);
  wait_migration(
      source->socket(),
      [](const Json& s) { return phase_is(s, "precopy") && s.at("pages").get<uint64_t>() > 0; },
      30s, "pre-copy to send pages");

  // While it runs: no pause, no second migration, the destination takes no second receive.
  auto pause = source->call("PUT", "/v1/vm/pause");
  CHECK(pause.status == 409);
  CHECK_THAT(pause.body, Contains("a migration is in progress"));
  CHECK(send_to(*source, migration_address(*destination)).status == 409);
  CHECK(destination
            ->call("PUT", "/v1/migration/receive",
                   Json{{"listen", migration_address(*destination)}}.dump())
            .status == 409);

  auto ctl = petrel::test::petrelctl({"-s", source->socket(), "migrate-cancel"});
  INFO("petrelctl: " << ctl.out << ctl.err);
  CHECK(ctl.exit_code == 0);
  auto status = wait_settled(source->socket(), 30s, "the source to cancel");
  CHECK(status.at("phase") == "cancelled");
  auto dst_status = wait_settled(destination->socket(), 30s, "the destination to give up");
  INFO("destination status " << dst_status.dump());
  CHECK(dst_status.at("phase") != "completed");
  CHECK(dst_status.at("error").is_string());
  CHECK(destination->state() == "empty");
  check_source_intact(*source, "cancelled", 131072, "cancel");
  // Nothing to cancel any more.
  CHECK(source->call("PUT", "/v1/migration/cancel").status == 409);

  // The same destination receives the same guest again, this time to the end.
  start_receiving(*destination);
  REQUIRE(send_to(*source, migration_address(*destination)).status == 202);
  auto exit = source->process().wait_exit(120s);
  INFO("source log:\n" << source->process().err());
  REQUIRE(exit.has_value());
  CHECK(*exit == 0);
  check_destination_continues(*destination, reports(source->process().out()), 131072);
}

TEST_CASE("migration: refusals answer 400 or 409 and change nothing", "[migration]") {
  auto source = start_source(kSmallGuest);
  for (const char* bad :
       {"", "bogus", "unix:", "unix:relative/path", "tcp:127.0.0.1", "tcp:127.0.0.1:0",
        "tcp:127.0.0.1:65536", "tcp:bad host:1", "tcp:[::1:4444"}) {
    auto reply = send_to(*source, bad);
    INFO("destination '" << bad << "': " << reply.body);
    CHECK(reply.status == 400);
    CHECK_THAT(reply.body, Contains("invalid_argument"));
  }
  CHECK(
      source->call("PUT", "/v1/migration/send", R"({"destination":"unix:/x","rounds":3})").status ==
      400);
  CHECK(source->call("PUT", "/v1/migration/send", R"({"destination":"unix:/x","max_rounds":0})")
            .status == 400);
  // A running VM receives nothing.
  auto receive =
      source->call("PUT", "/v1/migration/receive",
                   Json{{"listen", "unix:" + (source->dir() / "r.sock").string()}}.dump());
  INFO(receive.body);
  CHECK(receive.status == 409);
  CHECK(source->call("PUT", "/v1/migration/cancel").status == 409);
  CHECK(source->state() == "running");
  CHECK(source->call("GET", "/v1/migration").json().at("phase") == "idle");

  // A petrel without a VM has nothing to send.
  auto empty = empty_petrel();
  auto send =
      empty->call("PUT", "/v1/migration/send",
                  Json{{"destination", "unix:" + (source->dir() / "x.sock").string()}}.dump());
  INFO(send.body);
  CHECK(send.status == 409);
  CHECK(empty->state() == "empty");
  auto ctl = petrel::test::petrelctl({"-s", empty->socket(), "migrate-cancel"});
  CHECK(ctl.exit_code == 4);
  check_clean(reports(source->process().out()), 8192);
}
