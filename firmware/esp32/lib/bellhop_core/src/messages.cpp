#include "bellhop/messages.hpp"

#include "bellhop/reject.hpp"

namespace bellhop {
namespace {

constexpr std::string_view kChannels[] = {"telemetry", "state", "event", "cmd", "ack", "status"};
constexpr std::string_view kEventKinds[] = {"door", "breach", "gas", "button", "battery"};
constexpr std::string_view kDeviceKinds[] = {"thermostat",  "light",
                                             "door_lock",   "door_sensor",
                                             "environment_sensor", "gas_sensor"};
constexpr std::string_view kAckStatuses[] = {"ok", "error", "expired"};
constexpr const char* kRejectNames[] = {
    "none",           "bad_topic",    "foreign_hotel",   "unknown_channel",
    "wrong_direction", "bad_id",      "empty",           "too_large",
    "not_utf8",       "malformed_json", "duplicate_key", "too_deep",
    "not_object",     "unsupported_version", "missing_field", "wrong_type",
    "non_finite",     "out_of_range", "bad_name",        "too_long",
    "too_many_entries", "invalid_value"};
static_assert(sizeof kRejectNames / sizeof kRejectNames[0] == kRejectCount);

template <typename Enum, std::size_t N>
std::optional<Enum> lookup(const std::string_view (&names)[N], std::string_view name) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) return static_cast<Enum>(i);
  }
  return std::nullopt;
}

}  // namespace

const char* reject_name(Reject reason) { return kRejectNames[static_cast<std::size_t>(reason)]; }

std::string_view wire_name(Channel channel) { return kChannels[static_cast<std::size_t>(channel)]; }
std::string_view wire_name(EventKind kind) { return kEventKinds[static_cast<std::size_t>(kind)]; }
std::string_view wire_name(DeviceKind kind) { return kDeviceKinds[static_cast<std::size_t>(kind)]; }
std::string_view wire_name(AckStatus status) { return kAckStatuses[static_cast<std::size_t>(status)]; }

std::optional<Channel> channel_from(std::string_view name) { return lookup<Channel>(kChannels, name); }
std::optional<EventKind> event_kind_from(std::string_view name) {
  return lookup<EventKind>(kEventKinds, name);
}
std::optional<DeviceKind> device_kind_from(std::string_view name) {
  return lookup<DeviceKind>(kDeviceKinds, name);
}
std::optional<AckStatus> ack_status_from(std::string_view name) {
  return lookup<AckStatus>(kAckStatuses, name);
}

}  // namespace bellhop
