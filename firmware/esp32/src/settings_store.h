// NVS storage: the thermostat settings that must survive a reboot, and the
// network settings a hotel may change without reflashing.
#pragma once

#include <Preferences.h>

#include <cstdint>

#include "bellhop/thermostat.hpp"

// Network settings: NVS keys override the provisioning header's values.
struct NetworkConfig {
  char wifi_ssid[33] = {};
  char wifi_password[65] = {};
  char mqtt_host[65] = {};
  uint16_t mqtt_port = 0;
  char ntp_server[65] = {};
  char timezone[65] = {};
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
