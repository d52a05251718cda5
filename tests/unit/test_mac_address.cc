#include <catch2/catch.hpp>

#include "virtio/mac_address.h"

using petrel::ErrorCode;
using petrel::virtio::MacAddress;

TEST_CASE("MAC address parses and formats", "[net][mac]") {
  auto mac = MacAddress::parse("52:54:00:AB:cd:0f");
  REQUIRE(mac.ok());
  CHECK(mac->bytes() == std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f});
  CHECK(mac->to_string() == "52:54:00:ab:cd:0f");
  CHECK_FALSE(mac->is_multicast());
  CHECK(mac->is_locally_administered());

  auto dashed = MacAddress::parse("01-00-5e-00-00-01");
  REQUIRE(dashed.ok());
  CHECK(dashed->is_multicast());
  CHECK(MacAddress::parse(dashed->to_string()).value() == *dashed);
}

TEST_CASE("MAC address refuses malformed text", "[net][mac]") {
  for (const char* text : {"", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:11", "52:54:00:ab:cd:0g",
                           "52-54:00:ab:cd:0f", "52:54:00:ab:cd:f", "525400abcd0f",
                           "52:54:00:ab:cd:0f ", "5:254:00:ab:cd:0f", "52.54.00.ab.cd.0f"}) {
    INFO(text);
    auto mac = MacAddress::parse(text);
    REQUIRE_FALSE(mac.ok());
    CHECK(mac.error().code() == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("generated MAC is local unicast and stable per VM and NIC", "[net][mac]") {
  const auto a0 = MacAddress::generate("vm-a", 0);
  CHECK(a0.bytes()[0] == 0x02);
  CHECK(a0.is_locally_administered());
  CHECK_FALSE(a0.is_multicast());
  CHECK_FALSE(a0.is_zero());
  CHECK(MacAddress::generate("vm-a", 0) == a0);
  CHECK(MacAddress::generate("vm-a", 1) != a0);
  CHECK(MacAddress::generate("vm-b", 0) != a0);
  // The name/index boundary is unambiguous: ("vm-a1", 0) is not ("vm-a", 10).
  CHECK(MacAddress::generate("vm-a1", 0) != MacAddress::generate("vm-a", 10));
  // Fixed value: a change of the hash would change every existing guest's MAC.
  CHECK(a0.to_string() == "02:c8:e5:ac:2a:d9");
}
