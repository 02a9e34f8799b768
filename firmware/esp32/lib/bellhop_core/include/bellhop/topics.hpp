// MQTT topics of device protocol v1: hotel/{hotel_id}/device/{device_id}/{channel}.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string_view>

#include "bellhop/messages.hpp"
#include "bellhop/reject.hpp"

namespace bellhop {

inline constexpr std::size_t kMaxIdChars = 64;
// "hotel/" + id + "/device/" + id + "/telemetry" and a terminating NUL.
inline constexpr std::size_t kMaxTopicBytes = 6 + kMaxIdChars + 8 + kMaxIdChars + 10 + 1;

// A topic built in place; NUL-terminated for C APIs such as PubSubClient's.
class TopicBuffer {
 public:
  std::string_view view() const { return {data_.data(), size_}; }
  const char* c_str() const { return data_.data(); }
  // Concatenates the parts (cut at capacity: callers pass checked ids).
  void assign(std::initializer_list<std::string_view> parts);

 private:
  std::array<char, kMaxTopicBytes> data_{};
  std::size_t size_ = 0;
};

// 1-64 of A-Z a-z 0-9 _ - starting alphanumeric (hotel and device ids).
bool valid_id(std::string_view id);
// 1-64 of A-Z a-z 0-9 . _ : - starting alphanumeric (command ids).
bool valid_command_id(std::string_view id);
// 1-32 of a-z 0-9 _ starting with a letter (metric, value and command names).
bool valid_name(std::string_view name);
// 1-32 of A-Z a-z 0-9 . _ + - starting alphanumeric (firmware versions).
bool valid_firmware(std::string_view version);

// Fails with kBadId (hotel id checked first).
Reject build_topic(std::string_view hotel_id, std::string_view device_id, Channel channel,
                   TopicBuffer& out);
// hotel/{hotel_id}/broadcast/cmd: commands for every device of the hotel.
Reject build_broadcast_topic(std::string_view hotel_id, TopicBuffer& out);

inline constexpr std::size_t kDeviceChannelCount = 5;
// Channels a device publishes on, in the order the gateway subscribes to them.
inline constexpr std::array<Channel, kDeviceChannelCount> kDeviceChannels = {
    Channel::kTelemetry, Channel::kState, Channel::kEvent, Channel::kAck, Channel::kStatus};

// The gateway's filters: hotel/{hotel_id}/device/+/{channel} for each device channel.
Reject build_subscriptions(std::string_view hotel_id,
                           std::array<TopicBuffer, kDeviceChannelCount>& out);

// Checked in this order: shape (kBadTopic), hotel (kForeignHotel), device id
// (kBadId), channel (kUnknownChannel). The views in `out` point into `topic`.
Reject parse_topic(std::string_view topic, std::string_view hotel_id, Topic& out);

}  // namespace bellhop
