#include "bellhop/thermostat.hpp"

namespace bellhop {

std::string_view wire_name(ThermostatMode mode) {
  switch (mode) {
    case ThermostatMode::kOff: return "off";
    case ThermostatMode::kHeat: return "heat";
    case ThermostatMode::kCool: return "cool";
  }
  return "off";
}

std::optional<ThermostatMode> thermostat_mode_from(std::string_view name) {
  for (ThermostatMode m : {ThermostatMode::kOff, ThermostatMode::kHeat, ThermostatMode::kCool}) {
    if (wire_name(m) == name) return m;
  }
  return std::nullopt;
}

bool Setback::active_at(std::uint16_t minute_of_day) const {
  if (start_minute == end_minute) return false;
  if (start_minute < end_minute) return minute_of_day >= start_minute && minute_of_day < end_minute;
  return minute_of_day >= start_minute || minute_of_day < end_minute;  // wraps past midnight
}

Thermostat::Thermostat(ThermostatSettings saved, ThermostatConfig config)
    : settings_(saved), config_(config), target_(saved.setpoint) {
  // A corrupt or out-of-range saved value falls back to the defaults.
  if (!(settings_.setpoint >= config_.min_setpoint && settings_.setpoint <= config_.max_setpoint)) {
    settings_.setpoint = ThermostatSettings{}.setpoint;
  }
  if (!set_setback(settings_.setback)) settings_.setback = Setback{};
  target_ = settings_.setpoint;
}

bool Thermostat::set_setpoint(double celsius) {
  if (!(celsius >= config_.min_setpoint && celsius <= config_.max_setpoint)) return false;
  settings_.setpoint = celsius;
  return true;
}

void Thermostat::set_mode(ThermostatMode mode) {
  if (mode != settings_.mode) relay_on_ = false;  // the next update() decides afresh
  settings_.mode = mode;
}

bool Thermostat::set_setback(const Setback& setback) {
  if (setback.start_minute >= 24 * 60 || setback.end_minute >= 24 * 60) return false;
  if (!(setback.setpoint >= config_.min_setpoint && setback.setpoint <= config_.max_setpoint)) {
    return false;
  }
  settings_.setback = setback;
  return true;
}

void Thermostat::on_reading(double celsius, std::uint64_t now_ms) {
  // The sensor's own range; anything else is a wiring or sensor fault.
  if (!(celsius >= -40.0 && celsius <= 125.0)) return;
  reading_ = celsius;
  reading_at_ms_ = now_ms;
}

bool Thermostat::update(std::uint64_t now_ms, std::optional<std::uint16_t> minute_of_day) {
  target_ = settings_.setpoint;
  if (minute_of_day && settings_.setback.active_at(*minute_of_day)) target_ = settings_.setback.setpoint;

  const bool fresh = reading_ && now_ms - reading_at_ms_ <= config_.reading_timeout_ms;
  fault_ = fresh ? ThermostatFault::kNone : ThermostatFault::kNoReading;
  if (!fresh || settings_.mode == ThermostatMode::kOff) {
    relay_on_ = false;
    return relay_on_;
  }
  const double t = *reading_;
  const double half_band = config_.hysteresis / 2;
  // Inside the dead band the relay keeps its state, so it does not chatter.
  if (settings_.mode == ThermostatMode::kHeat) {
    if (t < target_ - half_band) relay_on_ = true;
    if (t > target_ + half_band) relay_on_ = false;
  } else {
    if (t > target_ + half_band) relay_on_ = true;
    if (t < target_ - half_band) relay_on_ = false;
  }
  return relay_on_;
}

}  // namespace bellhop
