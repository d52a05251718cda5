// A replay driver for fuzz targets, so that they run as ordinary tests with any compiler
// (no libFuzzer needed): every file of the given corpus directories (or single files), then
// --runs inputs made by a fixed-seed xorshift PRNG, half of them mutations of the corpus
// files and half random bytes. A crash or abort in the target fails the test.
//
// Usage: fuzz-<target>-replay [--seed=N] [--runs=N] [--max-len=N] [DIR|FILE]...
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

class Xorshift64 {
 public:
  explicit Xorshift64(uint64_t seed) : state_(seed == 0 ? 0x2545f4914f6cdd1dULL : seed) {}
  uint64_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }

 private:
  uint64_t state_;
};

std::vector<uint8_t> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool parse_flag(std::string_view arg, std::string_view name, uint64_t& out) {
  if (arg.substr(0, name.size()) != name) {
    return false;
  }
  out = std::strtoull(std::string(arg.substr(name.size())).c_str(), nullptr, 0);
  return true;
}

void run_one(const std::vector<uint8_t>& input) {
  // A copy in a buffer of its exact size, so that ASan catches reads past the end.
  std::vector<uint8_t> exact(input);
  LLVMFuzzerTestOneInput(exact.empty() ? nullptr : exact.data(), exact.size());
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = 1;
  uint64_t runs = 2000;
  uint64_t max_len = 4096;
  std::vector<std::vector<uint8_t>> corpus;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (parse_flag(arg, "--seed=", seed) || parse_flag(arg, "--runs=", runs) ||
        parse_flag(arg, "--max-len=", max_len)) {
      continue;
    }
    std::error_code ec;
    std::filesystem::path path(arg);
    if (std::filesystem::is_directory(path, ec)) {
      for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
        if (entry.is_regular_file()) {
          corpus.push_back(read_file(entry.path()));
        }
      }
    } else if (std::filesystem::is_regular_file(path, ec)) {
      corpus.push_back(read_file(path));
    } else {
      std::fprintf(stderr, "%s: no such file or directory\n", argv[i]);
      return 2;
    }
  }

  for (const auto& input : corpus) {
    run_one(input);
  }

  Xorshift64 rng(seed);
  std::vector<uint8_t> input;
  for (uint64_t run = 0; run < runs; ++run) {
    if (!corpus.empty() && rng.below(2) == 0) {
      input = corpus[rng.below(corpus.size())];
      uint64_t flips = 1 + rng.below(8);
      for (uint64_t f = 0; f < flips && !input.empty(); ++f) {
        uint8_t& byte = input[rng.below(input.size())];
        byte = rng.below(2) == 0 ? static_cast<uint8_t>(rng.next()) : byte ^ (1u << rng.below(8));
      }
    } else {
      input.resize(rng.below(max_len + 1));
      for (auto& byte : input) {
        byte = static_cast<uint8_t>(rng.next());
      }
    }
    run_one(input);
  }
  std::printf("replayed %zu corpus inputs and %llu generated inputs (seed %llu)\n", corpus.size(),
              static_cast<unsigned long long>(runs), static_cast<unsigned long long>(seed));
  return 0;
}
