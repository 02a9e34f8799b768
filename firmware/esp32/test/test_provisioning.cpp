// The provisioning header's format: what provisioning generates must satisfy
// the protocol's rules, checked on the example that defines the format.
#include <doctest/doctest.h>

#include <string_view>

#include "../include/provisioning.example.h"
#include "bellhop/messages.hpp"
#include "bellhop/topics.hpp"

namespace bellhop {

TEST_CASE("the example provisioning header follows the protocol's rules") {
  using namespace provisioning;
  static_assert(BELLHOP_PROVISIONING_FORMAT == 1);
  CHECK(valid_id(kHotelId));
  CHECK(valid_id(kDeviceId));
  CHECK(device_kind_from(kDeviceKind).has_value());
  CHECK_FALSE(std::string_view(kMqttHost).empty());
  CHECK(kMqttPort > 0);
  CHECK(kMqttPort < 65536);
  CHECK(std::string_view(kCaCert).rfind("-----BEGIN CERTIFICATE-----", 0) == 0);
  CHECK(std::string_view(kCaCert).find("-----END CERTIFICATE-----") != std::string_view::npos);
  TopicBuffer status;
  CHECK(build_topic(kHotelId, kDeviceId, Channel::kStatus, status) == Reject::kNone);
}

}  // namespace bellhop
