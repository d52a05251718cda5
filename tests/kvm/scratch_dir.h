// Small helpers shared by the end-to-end test files: a scratch directory removed with its
// contents at the end of the test, and skipping a test that cannot run on this host.
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

namespace petrel::test {

struct ScratchDir {
  explicit ScratchDir(const std::string& prefix = "petrel-test") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string path;
};

// Ends the test as skipped (exit 77, see main.cc) when the host cannot run it.
[[noreturn]] inline void skip(const std::string& why) {
  std::printf("SKIP: %s\n", why.c_str());
  std::fflush(stdout);
  std::_Exit(77);
}

}  // namespace petrel::test
