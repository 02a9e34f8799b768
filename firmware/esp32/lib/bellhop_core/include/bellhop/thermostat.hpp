// Thermostat control with hysteresis and fail-safe behaviour (sans-I/O).
//
// Fed temperature readings and the time, it says whether the heating (or
// cooling) relay should be on. It never depends on the gateway: settings
// arrive by command, are saved by the firmware, and stay in force while the
// gateway is unreachable or after a reboot. Without a fresh reading the
// relay is switched off (a failed sensor must not heat a room forever).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace bellhop {

enum class ThermostatMode : std::uint8_t { kOff, kHeat, kCool };

std::string_view wire_name(ThermostatMode mode);
std::optional<ThermostatMode> thermostat_mode_from(std::string_view name);

// A nightly (or any daily) setback window, in local minutes after midnight.
// start == end means no window; a window may wrap past midnight.
struct Setback {
  std::uint16_t start_minute = 0;
  std::uint16_t end_minute = 0;
  double setpoint = 17.0;

  bool active_at(std::uint16_t minute_of_day) const;
};

// What the device keeps in NVS and restores at boot.
struct ThermostatSettings {
  double setpoint = 21.0;  // fail-safe default before any command
  ThermostatMode mode = ThermostatMode::kHeat;
  Setback setback;
};

struct ThermostatConfig {
  double hysteresis = 0.5;              // width of the dead band around the setpoint, degC
  std::uint32_t reading_timeout_ms = 120000;  // older readings do not count
  double min_setpoint = 5.0;            // the protocol's setpoint bounds
  double max_setpoint = 35.0;
};

enum class ThermostatFault : std::uint8_t { kNone, kNoReading };

class Thermostat {
 public:
  explicit Thermostat(ThermostatSettings saved = {}, ThermostatConfig config = {});

  // False (and nothing changed) for a setpoint outside the configured bounds.
  bool set_setpoint(double celsius);
  void set_mode(ThermostatMode mode);
  bool set_setback(const Setback& setback);
  const ThermostatSettings& settings() const { return settings_; }

  // A temperature reading taken at `now_ms` (monotonic).
  void on_reading(double celsius, std::uint64_t now_ms);

  // The relay's new state at `now_ms`; `minute_of_day` is the local time
  // when the clock is known (without it the setback is not applied, so the
  // room stays at the comfort setpoint).
  bool update(std::uint64_t now_ms, std::optional<std::uint16_t> minute_of_day);

  bool relay_on() const { return relay_on_; }
  ThermostatFault fault() const { return fault_; }
  // The setpoint the last update() regulated to.
  double target() const { return target_; }

 private:
  ThermostatSettings settings_;
  ThermostatConfig config_;
  std::optional<double> reading_;
  std::uint64_t reading_at_ms_ = 0;
  bool relay_on_ = false;
  ThermostatFault fault_ = ThermostatFault::kNone;
  double target_;
};

}  // namespace bellhop
