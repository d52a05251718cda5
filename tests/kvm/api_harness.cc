#include "api_harness.h"

#include <stdlib.h>

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace petrel::test {

nlohmann::json HttpReply::json() const {
  INFO("body: " << body);
  auto parsed = nlohmann::json::parse(body, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  return parsed;
}

HttpReply curl_api(const std::string& socket, const std::string& method, const std::string& path,
                   const std::string& body, const std::vector<std::string>& extra) {
  std::vector<std::string> args{"-sS",           "-i",   "--max-time", "30",
                                "--unix-socket", socket, "-X",         method};
  std::string body_file;
  if (body.size() > 4096) {
    // Too big for an argument (E2BIG): curl reads it from a file.
    body_file = "/tmp/petrel-api-body-" + std::to_string(::getpid()) + ".json";
    std::ofstream(body_file, std::ios::binary) << body;
    args.insert(args.end(),
                {"-H", "Content-Type: application/json", "--data-binary", "@" + body_file});
  } else if (!body.empty()) {
    args.insert(args.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
  }
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back("http://localhost" + path);
  RunOptions options;
  options.timeout = std::chrono::seconds(40);
  auto r = run_process("/usr/bin/curl", args, options);
  if (!body_file.empty()) {
    std::remove(body_file.c_str());
  }
  HttpReply reply;
  if (r.exit_code != 0) {
    return reply;
  }
  const size_t split = r.out.find("\r\n\r\n");
  REQUIRE(split != std::string::npos);
  reply.headers = r.out.substr(0, split);
  reply.body = r.out.substr(split + 4);
  std::istringstream status_line(reply.headers);
  std::string version;
  status_line >> version >> reply.status;
  return reply;
}

CommandResult petrelctl(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  const char* bin = std::getenv("PETRELCTL_BIN");
  REQUIRE(bin != nullptr);
  RunOptions options;
  options.timeout = timeout;
  auto r = run_process(bin, args, options);
  INFO("petrelctl stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE_FALSE(r.timed_out);
  return {r.exit_code, r.out, r.err};
}

ApiPetrel::ApiPetrel(const std::string& guest, std::vector<std::string> extra) {
  make_dir();
  const std::string kernel = guest.find('/') == std::string::npos ? guest_image(guest) : guest;
  std::vector<std::string> argv{petrel_binary(), "run",          "--kernel",
                                kernel,          "--api-socket", socket_};
  argv.insert(argv.end(), extra.begin(), extra.end());
  start(std::move(argv));
}

ApiPetrel::ApiPetrel(const Command& command) {
  make_dir();
  std::vector<std::string> argv{petrel_binary()};
  argv.insert(argv.end(), command.args.begin(), command.args.end());
  argv.push_back("--api-socket");
  argv.push_back(socket_);
  start(std::move(argv));
}

void ApiPetrel::make_dir() {
  std::string templ = "/tmp/petrel-api-test-XXXXXX";
  REQUIRE(::mkdtemp(templ.data()) != nullptr);
  dir_ = templ;
  socket_ = (dir_ / "api.sock").string();
}

void ApiPetrel::start(std::vector<std::string> argv) {
  process_ = std::make_unique<BackgroundProcess>(argv, (dir_ / "out.txt").string(),
                                                 (dir_ / "err.txt").string());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(socket_) && call("GET", "/v1/vm").status == 200) {
      return;
    }
    if (!process_->running()) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  INFO("petrel log:\n" << process_->err());
  FAIL("petrel's API did not come up");
}

ApiPetrel::~ApiPetrel() {
  process_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string ApiPetrel::state() const {
  auto reply = call("GET", "/v1/vm/state");
  REQUIRE(reply.status == 200);
  return reply.json().at("state").get<std::string>();
}

EventFollower::EventFollower(const std::string& socket, const std::filesystem::path& dir,
                             const std::string& query) {
  static int counter = 0;
  out_path_ = (dir / ("events" + std::to_string(counter++) + ".ndjson")).string();
  curl_ = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"curl", "-sSN", "--unix-socket", socket,
                               "http://localhost/v1/events" + query},
      out_path_, out_path_ + ".err");
}

std::vector<nlohmann::json> EventFollower::lines() const {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_text_file(out_path_));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    auto parsed = nlohmann::json::parse(line, nullptr, false);
    INFO("event line: " << line);
    REQUIRE_FALSE(parsed.is_discarded());
    out.push_back(std::move(parsed));
  }
  return out;
}

bool EventFollower::wait_for(const std::string& type, const nlohmann::json& data,
                             std::chrono::seconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& event : lines()) {
      if (event.value("type", "") != type) {
        continue;
      }
      bool match = true;
      for (const auto& [key, value] : data.items()) {
        match = match && event["data"].contains(key) && event["data"][key] == value;
      }
      if (match) {
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace petrel::test
