// Helpers for driving a real petrel through its API socket in tests: a petrel in the
// background serving a test guest, curl calls, and petrelctl runs.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "background_process.h"
#include "petrel_process.h"

namespace petrel::test {

struct HttpReply {
  int status = 0;       // 0: curl could not talk to the socket
  std::string headers;  // the raw header block (status line included)
  std::string body;
  nlohmann::json json() const;  // REQUIREs a JSON body
};

// One request with curl over the Unix socket: `curl --unix-socket SOCK -X METHOD`.
HttpReply curl_api(const std::string& socket, const std::string& method, const std::string& path,
                   const std::string& body = "", const std::vector<std::string>& extra = {});

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the real petrelctl (PETRELCTL_BIN) with `args`.
CommandResult petrelctl(const std::vector<std::string>& args,
                        std::chrono::seconds timeout = std::chrono::seconds(60));

// A petrel serving `guest` with an API socket in a scratch directory.
class ApiPetrel {
 public:
  // Starts `petrel run --kernel <guest image> --api-socket DIR/api.sock <extra...>` and waits
  // for the socket to answer GET /v1/vm. `guest` is a test guest name or a path to a kernel.
  explicit ApiPetrel(const std::string& guest, std::vector<std::string> extra = {});
  // Starts `petrel <args...> --api-socket DIR/api.sock` (serve, restore DIR, receive ADDR).
  struct Command {
    std::vector<std::string> args;
  };
  explicit ApiPetrel(const Command& command);
  ~ApiPetrel();
  ApiPetrel(const ApiPetrel&) = delete;
  ApiPetrel& operator=(const ApiPetrel&) = delete;

  const std::string& socket() const { return socket_; }
  const std::filesystem::path& dir() const { return dir_; }
  BackgroundProcess& process() { return *process_; }

  HttpReply call(const std::string& method, const std::string& path,
                 const std::string& body = "") const {
    return curl_api(socket_, method, path, body);
  }
  // GET /v1/vm/state's "state".
  std::string state() const;

 private:
  void make_dir();
  void start(std::vector<std::string> argv);

  std::filesystem::path dir_;
  std::string socket_;
  std::unique_ptr<BackgroundProcess> process_;
};

// `curl -N` following GET /v1/events in the background; lines() parses what arrived.
class EventFollower {
 public:
  EventFollower(const std::string& socket, const std::filesystem::path& dir,
                const std::string& query = "?after=0");
  std::vector<nlohmann::json> lines() const;
  // Waits until an event of `type` whose data matches every key of `data` arrived.
  bool wait_for(const std::string& type, const nlohmann::json& data,
                std::chrono::seconds timeout) const;

 private:
  std::string out_path_;
  std::unique_ptr<BackgroundProcess> curl_;
};

}  // namespace petrel::test
