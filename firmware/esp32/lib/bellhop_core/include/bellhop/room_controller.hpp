// The room controller's behaviour, without I/O (sans-I/O device core).
//
// The firmware's glue feeds it what happened (connected, a message, sensor
// readings, a door, a button, the passing of time) and carries out what it
// returns in an Outbox (publish these payloads, switch these relays, save
// these settings). Everything a device does on the protocol is decided
// here, so host tests cover it; the glue only moves bytes and pins.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "bellhop/codec.hpp"
#include "bellhop/command_guard.hpp"
#include "bellhop/messages.hpp"
#include "bellhop/reject.hpp"
#include "bellhop/thermostat.hpp"
#include "bellhop/topics.hpp"

namespace bellhop {

struct DeviceIdentity {
  std::string_view hotel_id;
  std::string_view device_id;
  DeviceKind kind = DeviceKind::kThermostat;
  std::string_view firmware;
};

// Which optional parts this board has fitted.
struct Fitted {
  bool light_relay = true;
  bool door = true;
  bool gas = true;
};

struct ControllerConfig {
  std::uint32_t telemetry_interval_ms = 10000;
  std::uint32_t door_held_open_ms = 120000;  // then a `breach` event (held_open)
  double gas_warning_ppm = 1000;
  double gas_alarm_ppm = 5000;
  ThermostatConfig thermostat;
  Fitted fitted;
};

// Times of one call. `unix_ms` is 0 until the clock has been set by SNTP.
struct Now {
  std::uint64_t mono_ms = 0;
  std::uint64_t unix_ms = 0;
  std::optional<std::uint16_t> local_minute;  // minute of the local day, when the clock is set
};

// The latest sensor values; a missing one was not read (or failed).
struct Readings {
  std::optional<double> temperature;        // room air, degC (SHT31)
  std::optional<double> humidity;           // %RH
  std::optional<double> probe_temperature;  // NTC thermistor, degC (fallback for control)
  std::optional<double> luminosity;         // lux
  std::optional<double> gas_ppm;
  std::optional<double> rssi;               // dBm
};

struct Publication {
  Channel channel = Channel::kTelemetry;
  std::uint8_t qos = 1;
  bool retained = false;
  std::string_view payload;  // valid until the outbox is cleared
  // Nonzero for an event: once the broker has acknowledged it, report
  // RoomController::on_delivered(event_id); until then it is kept and sent
  // again after a reconnect.
  std::uint32_t event_id = 0;
};

// What one call asks the glue to do, in order. Bounded: a publication that
// does not fit is dropped and counted in `dropped`.
class Outbox {
 public:
  static constexpr std::size_t kMaxPublications = 12;
  static constexpr std::size_t kPayloadBytes = 3072;

  const Publication* begin() const { return publications_.data(); }
  const Publication* end() const { return publications_.data() + count_; }
  std::size_t size() const { return count_; }
  std::uint32_t dropped() const { return dropped_; }

  std::optional<bool> hvac_relay;  // set: switch the relay to this
  std::optional<bool> light_relay;
  bool save_settings = false;  // settings() changed: write them to NVS

  // The glue calls this once it has carried everything out.
  void clear();

  // Encodes `msg` into the outbox; false (and counted) when it does not fit.
  template <typename Message>
  bool add(Channel channel, std::uint8_t qos, bool retained, const Message& msg, std::uint32_t event_id = 0);
  bool add_raw(Channel channel, std::uint8_t qos, bool retained, std::string_view payload);

 private:
  std::array<Publication, kMaxPublications> publications_{};
  std::size_t count_ = 0;
  std::array<char, kPayloadBytes> bytes_{};
  std::size_t used_ = 0;
  std::uint32_t dropped_ = 0;
};

enum class GasLevel : std::uint8_t { kClear, kWarning, kAlarm };

struct ControllerCounters {
  RejectCounters rejected;          // command payloads that did not decode
  std::uint32_t foreign_topic = 0;  // a message on a topic that is not ours
  std::uint32_t clock_unset = 0;    // commands dropped before SNTP
  std::uint32_t executed = 0;
  std::uint32_t duplicates = 0;
  std::uint32_t expired = 0;
  std::uint32_t events_lost = 0;    // the undelivered event queue overflowed
};

class RoomController {
 public:
  // Ids are checked here: an invalid identity leaves valid() false and the
  // controller inert (the glue then reports the provisioning fault).
  RoomController(const DeviceIdentity& identity, const ThermostatSettings& saved,
                 const ControllerConfig& config = {});

  bool valid() const { return valid_; }
  const TopicBuffer& topic(Channel channel) const { return topics_[static_cast<std::size_t>(channel)]; }
  const TopicBuffer& broadcast_topic() const { return broadcast_; }
  // The Last Will: `offline`, retained, QoS 1, on topic(Channel::kStatus).
  static constexpr std::string_view will_payload() { return kWillPayload; }

  // The MQTT session is up and subscribed to cmd and broadcast: birth
  // message, current state, and events queued while offline.
  void on_connected(const Now& now, Outbox& out);
  void on_disconnected() { connected_ = false; }
  // A clean shutdown (reboot for an update): the offline status, before DISCONNECT.
  void on_shutdown(const Now& now, Outbox& out);

  // A message on one of the subscribed topics.
  void on_message(std::string_view topic, std::string_view payload, const Now& now, Outbox& out);

  void on_readings(const Readings& readings, const Now& now, Outbox& out);
  void on_door(bool open, const Now& now, Outbox& out);
  // The door's position read at boot: reported in the state, not as an event.
  void set_door_at_boot(bool open, const Now& now);
  // A short press of the wall switch toggles the light.
  void on_button(const Now& now, Outbox& out);
  // The broker acknowledged the event publication tagged `event_id`.
  void on_delivered(std::uint32_t event_id);
  // Call often (every loop): control, telemetry, held-open door.
  void tick(const Now& now, Outbox& out);

  const ThermostatSettings& settings() const { return thermostat_.settings(); }
  const Thermostat& thermostat() const { return thermostat_; }
  bool light_on() const { return light_on_; }
  bool connected() const { return connected_; }
  const ControllerCounters& counters() const { return counters_; }

 private:
  struct PendingEvent {
    EventKind kind = EventKind::kButton;
    std::uint64_t mono_ms = 0;
    bool open = false;
    double gas_ppm = 0;
    GasLevel level = GasLevel::kClear;
    std::uint32_t id = 0;
  };
  static constexpr std::size_t kMaxPendingEvents = 8;

  // Runs `command_` and fills `ack_`; true when the reported state changed.
  bool execute(const Now& now, Outbox& out);
  void queue_event(const PendingEvent& event, const Now& now, Outbox& out);
  void flush_events(const Now& now, Outbox& out);
  void publish_state(const Now& now, Outbox& out);
  void control(const Now& now, Outbox& out);
  void set_light(bool on, Outbox& out);

  DeviceIdentity identity_;
  ControllerConfig config_;
  bool valid_ = false;
  std::array<TopicBuffer, 6> topics_{};
  TopicBuffer broadcast_;
  Thermostat thermostat_;
  CommandGuard<64> guard_;  // the protocol's 64 ids
  Decoder decoder_;
  ControllerCounters counters_;

  bool connected_ = false;
  bool light_on_ = false;
  bool door_open_ = false;
  bool breach_reported_ = false;
  std::uint64_t door_opened_mono_ = 0;
  GasLevel gas_level_ = GasLevel::kClear;
  Readings readings_;
  std::uint32_t seq_ = 0;
  std::optional<std::uint64_t> last_telemetry_mono_;
  std::array<PendingEvent, kMaxPendingEvents> pending_{};
  std::size_t pending_count_ = 0;
  std::uint32_t next_event_id_ = 1;

  // Messages being built live here, not on the loop task's small stack
  // (each holds up to 32 entries).
  Command command_;
  Ack ack_;
  std::array<char, 512> ack_bytes_{};
  char error_[kMaxTextChars + 1] = {};
  StateReport state_;
  Telemetry telemetry_;
  Event event_;
};

std::string_view wire_name(GasLevel level);

}  // namespace bellhop
