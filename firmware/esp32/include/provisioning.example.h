// Provisioning of one device: the shape of include/provisioning.h.
//
// Provisioning generates include/provisioning.h (never committed: it holds
// the device's MQTT password) with exactly these names, per device. The
// firmware refuses to build without it, except in the esp32dev-example
// environment, which builds with this file to check that the code compiles.
// Format 1; docs/firmware.md describes every field.
#pragma once

#define BELLHOP_PROVISIONING_FORMAT 1

namespace bellhop::provisioning {

// Ids as the protocol's id rule allows them: 1-64 of A-Z a-z 0-9 _ -,
// first alphanumeric. They make the device's topics.
inline constexpr char kHotelId[] = "hotel-a";
inline constexpr char kDeviceId[] = "r101-thermostat";
// One of: thermostat, light, door_lock, door_sensor, environment_sensor, gas_sensor.
inline constexpr char kDeviceKind[] = "thermostat";

// The hotel's Mosquitto (on the edge gateway), MQTT over TLS.
inline constexpr char kMqttHost[] = "gateway.hotel-a.lan";
inline constexpr unsigned kMqttPort = 8883;
// The device's own credentials, from the broker's password file.
inline constexpr char kMqttUsername[] = "r101-thermostat";
inline constexpr char kMqttPassword[] = "example-password-not-for-use";
// PEM of the CA that signed the broker's certificate.
inline constexpr char kCaCert[] = R"PEM(-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUExampleExampleExampleExampleExampleMAoGCCqGSM49
BAMCMBQxEjAQBgNVBAMMCWJlbGxob3AtY2EwHhcNMjYxMTIyMDAwMDAwWhcNMzYx
MTIyMDAwMDAwWjAUMRIwEAYDVQQDDAliZWxsaG9wLWNhMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEexampleexampleexampleexampleexampleexampleexample
-----END CERTIFICATE-----
)PEM";

// Optional: empty means "from NVS" (keys wifi_ssid, wifi_pass).
inline constexpr char kWifiSsid[] = "hotel-a-devices";
inline constexpr char kWifiPassword[] = "example-wifi-password";
// Optional: empty means the MQTT host (the gateway keeps the LAN's time).
inline constexpr char kNtpServer[] = "";
// POSIX TZ of the hotel, for the setback schedule's local time.
inline constexpr char kTimezone[] = "CET-1CEST,M3.5.0,M10.5.0/3";

}  // namespace bellhop::provisioning
