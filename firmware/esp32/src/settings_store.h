// NVS storage: the thermostat settings that must survive a reboot, and the
// network settings a hotel may change without reflashing.
#pragma once

#include <Preferences.h>

#include <cstddef>
#include <cstdint>

#include "bellhop/thermostat.hpp"

// Network settings: NVS keys override the provisioning header's values.
struct NetworkConfig {
  static constexpr size_t kTextBytes = 65;
  char wifi_ssid[33] = {};
  char wifi_password[kTextBytes] = {};
  char mqtt_host[kTextBytes] = {};
  uint16_t mqtt_port = 0;
  char ntp_server[kTextBytes] = {};
  char timezone[kTextBytes] = {};
  uint32_t telemetry_interval_ms = 10000;
};

class SettingsStore {
 public:
  // Missing or unreadable keys give the safe defaults (ThermostatSettings{}).
  bellhop::ThermostatSettings load_thermostat();
  // Writes only what changed: NVS pages wear out, and commands repeat.
  void save_thermostat(const bellhop::ThermostatSettings& settings);
  // `config` holds the provisioning defaults; keys present in NVS replace them.
  void load_network(NetworkConfig& config);

 private:
  bellhop::ThermostatSettings saved_;
};
