#include "settings_store.h"

#include <cstring>

namespace {

// NVS namespaces (at most 15 characters, as are the keys).
constexpr char kThermostatNamespace[] = "bellhop";
constexpr char kNetworkNamespace[] = "bellhop_net";

// Replaces `out` only with a whole value that fits: a partial read must not
// leave half a host name behind.
void read_text(Preferences& prefs, const char* key, char* out, size_t capacity) {
  if (!prefs.isKey(key)) return;
  char value[NetworkConfig::kTextBytes] = {};
  const size_t n = prefs.getString(key, value, capacity < sizeof value ? capacity : sizeof value);
  if (n == 0) {
    Serial.printf("nvs: %s is unreadable or too long, ignored\n", key);
    return;
  }
  std::strncpy(out, value, capacity - 1);
  out[capacity - 1] = '\0';
}

}  // namespace

bellhop::ThermostatSettings SettingsStore::load_thermostat() {
  bellhop::ThermostatSettings s;
  Preferences prefs;
  if (prefs.begin(kThermostatNamespace, /*readOnly=*/true)) {
    s.setpoint = prefs.getFloat("setpoint", static_cast<float>(s.setpoint));
    const uint8_t mode = prefs.getUChar("mode", static_cast<uint8_t>(s.mode));
    if (mode <= static_cast<uint8_t>(bellhop::ThermostatMode::kCool)) s.mode = static_cast<bellhop::ThermostatMode>(mode);
    s.setback.start_minute = prefs.getUShort("sb_start", 0);
    s.setback.end_minute = prefs.getUShort("sb_end", 0);
    s.setback.setpoint = prefs.getFloat("sb_setpoint", static_cast<float>(s.setback.setpoint));
    prefs.end();
  }
  // The Thermostat repairs values out of range; NaN from a torn write included.
  saved_ = s;
  return s;
}

void SettingsStore::save_thermostat(const bellhop::ThermostatSettings& s) {
  Preferences prefs;
  if (!prefs.begin(kThermostatNamespace, /*readOnly=*/false)) {
    Serial.println("nvs: cannot open settings for writing; keeping them in RAM");
    return;
  }
  if (s.setpoint != saved_.setpoint) prefs.putFloat("setpoint", static_cast<float>(s.setpoint));
  if (s.mode != saved_.mode) prefs.putUChar("mode", static_cast<uint8_t>(s.mode));
  if (s.setback.start_minute != saved_.setback.start_minute) prefs.putUShort("sb_start", s.setback.start_minute);
  if (s.setback.end_minute != saved_.setback.end_minute) prefs.putUShort("sb_end", s.setback.end_minute);
  if (s.setback.setpoint != saved_.setback.setpoint) prefs.putFloat("sb_setpoint", static_cast<float>(s.setback.setpoint));
  prefs.end();
  saved_ = s;
}

void SettingsStore::load_network(NetworkConfig& c) {
  Preferences prefs;
  if (!prefs.begin(kNetworkNamespace, /*readOnly=*/true)) return;  // nothing stored: provisioning only
  read_text(prefs, "wifi_ssid", c.wifi_ssid, sizeof c.wifi_ssid);
  read_text(prefs, "wifi_pass", c.wifi_password, sizeof c.wifi_password);
  read_text(prefs, "mqtt_host", c.mqtt_host, sizeof c.mqtt_host);
  c.mqtt_port = prefs.getUShort("mqtt_port", c.mqtt_port);
  read_text(prefs, "ntp", c.ntp_server, sizeof c.ntp_server);
  read_text(prefs, "tz", c.timezone, sizeof c.timezone);
  const uint32_t interval = prefs.getULong("tele_ms", c.telemetry_interval_ms);
  // Bounded, so a typo cannot flood the gateway or silence the device.
  if (interval >= 1000 && interval <= 3600000) c.telemetry_interval_ms = interval;
  prefs.end();
}
