// ScratchDir: a fresh directory under /tmp for one test, removed with everything in it.
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

namespace petrel::testing {

class ScratchDir {
 public:
  ScratchDir() {
    std::string templ = "/tmp/petrel-test-XXXXXX";
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Writes `content` to `relative` (creating its directories); returns the full path.
  std::filesystem::path write(const std::filesystem::path& relative, std::string_view content) {
    std::filesystem::path full = path_ / relative;
    std::filesystem::create_directories(full.parent_path());
    std::ofstream out(full, std::ios::binary);
    out << content;
    REQUIRE(out.good());
    return full;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace petrel::testing
