#include "api/request_body.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <exception>

#include <fmt/format.h>

namespace petrel {
namespace {

bool is_known(std::string_view name, const std::vector<std::string_view>& known) {
  return std::find(known.begin(), known.end(), name) != known.end();
}

// Client text quoted into an error message: bounded and printable.
std::string quote_client_text(std::string_view text) {
  constexpr std::size_t kMax = 64;
  std::string out;
  for (char c : text.substr(0, kMax)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (text.size() > kMax) {
    out += "...";
  }
  return "\"" + out + "\"";
}

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

}  // namespace

Result<RequestBody> RequestBody::parse(std::string_view body,
                                       const std::vector<std::string_view>& known_fields) {
  if (std::all_of(body.begin(), body.end(),
                  [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; })) {
    return RequestBody(nlohmann::json::object());
  }
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(body);
  } catch (const std::exception& e) {
    return invalid(fmt::format("request body is not valid JSON: {}", e.what()));
  }
  if (!json.is_object()) {
    return invalid(fmt::format("request body must be a JSON object, not {}", json.type_name()));
  }
  for (const auto& [name, value] : json.items()) {
    if (!is_known(name, known_fields)) {
      std::string known;
      for (auto k : known_fields) {
        known += known.empty() ? std::string(k) : ", " + std::string(k);
      }
      return invalid(fmt::format("unknown field {} in the request body (known: {})",
                                 quote_client_text(name), known.empty() ? "none" : known));
    }
  }
  return RequestBody(std::move(json));
}

Result<std::optional<int64_t>> RequestBody::get_int(std::string_view field, int64_t min,
                                                    int64_t max) const {
  auto it = json_.find(std::string(field));
  if (it == json_.end()) {
    return std::optional<int64_t>();
  }
  std::string range = fmt::format("an integer from {} to {}", min, max);
  if (!it->is_number_integer()) {
    return invalid(fmt::format("field \"{}\" must be {}, not {}", field, range, it->type_name()));
  }
  bool in_range = false;
  int64_t value = 0;
  if (it->is_number_unsigned()) {
    auto u = it->get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(INT64_MAX);
    value = in_range ? static_cast<int64_t>(u) : 0;
  } else {
    value = it->get<int64_t>();
    in_range = true;
  }
  in_range = in_range && value >= min && value <= max;
  if (!in_range) {
    return invalid(fmt::format("field \"{}\" must be {}, got {}", field, range, it->dump()));
  }
  return std::optional<int64_t>(value);
}

Result<std::optional<std::string>> RequestBody::get_string(std::string_view field) const {
  auto it = json_.find(std::string(field));
  if (it == json_.end()) {
    return std::optional<std::string>();
  }
  if (!it->is_string()) {
    return invalid(fmt::format("field \"{}\" must be a string, not {}", field, it->type_name()));
  }
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::optional<bool>> RequestBody::get_bool(std::string_view field) const {
  auto it = json_.find(std::string(field));
  if (it == json_.end()) {
    return std::optional<bool>();
  }
  if (!it->is_boolean()) {
    return invalid(
        fmt::format("field \"{}\" must be true or false, not {}", field, it->type_name()));
  }
  return std::optional<bool>(it->get<bool>());
}

Result<std::map<std::string, std::string>> parse_query(
    std::string_view query, const std::vector<std::string_view>& known_names) {
  std::map<std::string, std::string> params;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) {
      continue;  // "a=1&&b=2" or a trailing '&'
    }
    auto eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (!is_known(name, known_names)) {
      return invalid(fmt::format("unknown query parameter {}", quote_client_text(name)));
    }
    if (!params.emplace(std::string(name), std::string(value)).second) {
      return invalid(fmt::format("query parameter {} given twice", quote_client_text(name)));
    }
  }
  return params;
}

Result<uint64_t> parse_uint_param(std::string_view name, std::string_view value) {
  uint64_t out = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, out);
  if (value.empty() || ec != std::errc() || ptr != end) {
    return invalid(fmt::format("query parameter \"{}\" must be an unsigned decimal integer, got {}",
                               name, quote_client_text(value)));
  }
  return out;
}

}  // namespace petrel
