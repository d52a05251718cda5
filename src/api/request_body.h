// RequestBody: validation of client-controlled request bodies and query strings. Every
// failure is kInvalidArgument (HTTP 400 "invalid_argument") with a message that names the
// offending field or parameter.
//
// - A body is empty (read as {}) or one JSON object; malformed JSON, trailing bytes, or any
//   other JSON value is refused, and so is a field outside the list the endpoint knows.
// - Getters return nullopt for an absent field, an error for a present one of the wrong
//   type or range (JSON null is a wrong type, not "absent").
// - A query string is `name=value` pairs joined by '&'; unknown or repeated names are refused.
//   Values are taken literally (no percent-decoding: no parameter needs it).
//
// Plain values, no thread affinity.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/base/result.h"

namespace petrel {

class RequestBody {
 public:
  static Result<RequestBody> parse(std::string_view body,
                                   const std::vector<std::string_view>& known_fields);

  // An integer field within [min, max].
  Result<std::optional<int64_t>> get_int(std::string_view field, int64_t min, int64_t max) const;
  Result<std::optional<std::string>> get_string(std::string_view field) const;
  Result<std::optional<bool>> get_bool(std::string_view field) const;

  const nlohmann::json& json() const { return json_; }

 private:
  explicit RequestBody(nlohmann::json json) : json_(std::move(json)) {}

  nlohmann::json json_;  // always an object
};

// The query parameters of a request, by name; refuses names outside `known_names`.
Result<std::map<std::string, std::string>> parse_query(
    std::string_view query, const std::vector<std::string_view>& known_names);

// A decimal unsigned integer parameter ("after=42"): digits only, no sign, fits in 64 bits.
Result<uint64_t> parse_uint_param(std::string_view name, std::string_view value);

}  // namespace petrel
