#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "vmm/base/event_fd.h"
#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

using petrel::Error;
using petrel::ErrorCode;
using petrel::Result;

namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) {
    return Error(ErrorCode::kInvalidArgument, "not positive");
  }
  return v;
}

Result<int> doubled(int v) {
  PETREL_TRY_ASSIGN(int x, std::move(parse_positive(v)).context("doubling"));
  return 2 * x;
}

}  // namespace

TEST_CASE("Result carries a value or an error with its context chain", "[base]") {
  auto good = doubled(21);
  REQUIRE(good.ok());
  CHECK(*good == 42);

  auto bad = std::move(doubled(-1)).context("outer");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code() == ErrorCode::kInvalidArgument);
  CHECK(bad.error().chain() == std::vector<std::string>{"outer", "doubling", "not positive"});
  CHECK(bad.error().to_string() == "outer: doubling: not positive");
}

TEST_CASE("Error::from_errno names the failed call and maps ENOENT", "[base]") {
  auto e = Error::from_errno("open /x", ENOENT);
  CHECK(e.code() == ErrorCode::kNotFound);
  CHECK(e.sys_errno() == ENOENT);
  CHECK(e.message() == "open /x: No such file or directory");
  CHECK(Error::from_errno("read", EIO).code() == ErrorCode::kIo);
}

TEST_CASE("UniqueFd closes what it owns, once", "[base]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  ::close(fds[1]);
  {
    petrel::UniqueFd a(fds[0]);
    petrel::UniqueFd b(std::move(a));
    CHECK_FALSE(a.valid());
    CHECK(b.get() == fds[0]);
    CHECK(::fcntl(fds[0], F_GETFD) >= 0);
  }
  CHECK(::fcntl(fds[0], F_GETFD) == -1);
}

TEST_CASE("EventFd counts signals and reads zero when empty", "[base]") {
  auto efd = petrel::EventFd::create(EFD_NONBLOCK);
  REQUIRE(efd.ok());
  CHECK(*efd->consume() == 0);
  REQUIRE(efd->signal().ok());
  REQUIRE(efd->signal(2).ok());
  CHECK(*efd->consume() == 3);
  CHECK(*efd->consume() == 0);
}
