// Typed messages of device protocol v1 (docs/device-protocol.md).
//
// Plain structs with fixed capacity: no heap. Text fields are views; a
// decoded message's views point into the Decoder that produced it (valid
// until its next decode) or into the topic it was given; a message built for
// encoding points at whatever the caller owns. Times are Unix milliseconds.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>

namespace bellhop {

inline constexpr int kProtocolVersion = 1;
inline constexpr std::size_t kMaxEntries = 32;      // metrics, values, params, data, result
inline constexpr std::size_t kMaxTextChars = 128;   // a text value or an ack's error
inline constexpr std::uint64_t kMaxTs = (std::uint64_t{1} << 53) - 1;
inline constexpr std::uint64_t kMaxSeq = 0xFFFFFFFFu;
inline constexpr double kMetricLimit = 1e9;         // bound of metrics the protocol does not name
inline constexpr std::string_view kWillPayload = "offline";
inline constexpr std::string_view kExpiredError = "command expired";

enum class Channel : std::uint8_t { kTelemetry, kState, kEvent, kCmd, kAck, kStatus };
enum class EventKind : std::uint8_t { kDoor, kBreach, kGas, kButton, kBattery };
enum class DeviceKind : std::uint8_t {
  kThermostat,
  kLight,
  kDoorLock,
  kDoorSensor,
  kEnvironmentSensor,
  kGasSensor,
};
enum class AckStatus : std::uint8_t { kOk, kError, kExpired };

// Wire names ("telemetry", "door", "door_lock", "expired", ...).
std::string_view wire_name(Channel channel);
std::string_view wire_name(EventKind kind);
std::string_view wire_name(DeviceKind kind);
std::string_view wire_name(AckStatus status);
std::optional<Channel> channel_from(std::string_view name);
std::optional<EventKind> event_kind_from(std::string_view name);
std::optional<DeviceKind> device_kind_from(std::string_view name);
std::optional<AckStatus> ack_status_from(std::string_view name);

// A flat JSON value: what metrics, values, params, data and results hold.
struct Value {
  enum class Type : std::uint8_t { kNull, kBool, kNumber, kText };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string_view text;

  static constexpr Value null() { return {}; }
  static constexpr Value of(bool b) { return {Type::kBool, b, 0, {}}; }
  static constexpr Value of(double n) { return {Type::kNumber, false, n, {}}; }
  static constexpr Value of(int n) { return {Type::kNumber, false, static_cast<double>(n), {}}; }
  static constexpr Value of(std::string_view t) { return {Type::kText, false, 0, t}; }
  static constexpr Value of(const char* t) { return of(std::string_view(t)); }
};

struct Entry {
  std::string_view name;
  Value value;
};

// An ordered name -> value map of at most kMaxEntries (order is kept on the wire).
class Entries {
 public:
  // False (and nothing added) when full.
  bool add(std::string_view name, Value value) {
    if (size_ == kMaxEntries) return false;
    items_[size_++] = Entry{name, value};
    return true;
  }
  void clear() { size_ = 0; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Entry* begin() const { return items_.data(); }
  const Entry* end() const { return items_.data() + size_; }
  const Value* find(std::string_view name) const {
    for (const Entry& e : *this) {
      if (e.name == name) return &e.value;
    }
    return nullptr;
  }

 private:
  std::array<Entry, kMaxEntries> items_{};
  std::size_t size_ = 0;
};

struct Topic {
  std::string_view hotel_id;
  std::string_view device_id;
  Channel channel = Channel::kTelemetry;
};

struct Telemetry {
  std::uint64_t ts = 0;
  std::uint32_t seq = 0;
  Entries metrics;  // numbers only
};

struct StateReport {
  std::uint64_t ts = 0;
  Entries values;
};

struct Event {
  std::uint64_t ts = 0;
  EventKind kind = EventKind::kButton;
  Entries data;
};

// Birth message (online), clean goodbye (offline with ts) or Last Will
// (offline without ts: the bare payload `offline`).
struct Status {
  bool online = false;
  std::optional<std::uint64_t> ts;
  std::optional<DeviceKind> kind;
  std::optional<std::string_view> firmware;
};

struct Ack {
  std::string_view id;
  AckStatus status = AckStatus::kOk;
  std::optional<Entries> result;
  std::optional<std::string_view> error;
};

// Edge -> device on `cmd`; `id` is the idempotency key.
struct Command {
  std::string_view id;
  std::string_view name;
  Entries params;
  std::uint64_t expires_at = 0;
};

using DeviceMessage = std::variant<Telemetry, StateReport, Event, Status, Ack>;

// What a device published, as the edge sees it.
struct Decoded {
  std::string_view device_id;
  DeviceMessage message;
};

}  // namespace bellhop
