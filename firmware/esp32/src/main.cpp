// Room controller firmware: wires the board's I/O to the protocol core.
//
// Everything the device decides (what to publish, which relay to switch,
// what to save) happens in bellhop::RoomController; this file moves events
// in and carries its Outbox out. Every network wait has a timeout, the loop
// never reboots for connectivity, and a watchdog restarts it only if it hangs.
#include <Arduino.h>
#include <esp_system.h>
#include <esp_timer.h>

#include <cstring>
#include <optional>

#include "bellhop/backoff.hpp"
#include "bellhop/room_controller.hpp"
#include "board.h"
#include "device_clock.h"
#include "mqtt_link.h"
#include "provisioning_config.h"
#include "relays.h"
#include "sensors.h"
#include "settings_store.h"
#include "wifi_link.h"

// The loop task's default 8 KiB is tight for TLS plus JSON work; the core
// keeps its large messages in static storage, this is margin.
#ifdef SET_LOOP_TASK_STACK_SIZE
SET_LOOP_TASK_STACK_SIZE(16 * 1024);
#endif

namespace {

namespace prov = bellhop::provisioning;

constexpr char kFirmwareVersion[] = "1.0.0+esp32";

SettingsStore store;
NetworkConfig network;
WifiLink wifi;
MqttLink mqtt;
DeviceClock device_clock;
Sensors sensors;
Relays relays;
// Static storage (about 20 KiB with its decoder and command memory): no heap.
std::optional<bellhop::RoomController> controller;
bellhop::Outbox outbox;
Inbound inbound;

bellhop::Backoff mqtt_backoff({1000, 60000});
uint64_t mqtt_retry_at_ms = 0;
bool mqtt_was_up = false;
uint64_t next_reading_ms = 0;

// The loop's heartbeat, checked from the esp_timer task. Not the task
// watchdog: the Arduino core configures that one (5 s by default, shorter
// than a TLS connect to a broker that does not answer) and its API differs
// between ESP-IDF 4.4 and 5; so the loop gets its own, generous watchdog.
volatile int64_t loop_beat_us = 0;

void check_loop(void*) {
  if (esp_timer_get_time() - loop_beat_us > static_cast<int64_t>(board::kLoopStallSeconds) * 1000000) {
    Serial.println("watchdog: the loop is stuck, restarting");
    esp_restart();
  }
}

void start_loop_watchdog() {
  loop_beat_us = esp_timer_get_time();
  esp_timer_create_args_t args = {};
  args.callback = &check_loop;
  args.name = "loop_watchdog";
  esp_timer_handle_t timer = nullptr;
  if (esp_timer_create(&args, &timer) == ESP_OK) esp_timer_start_periodic(timer, 5 * 1000000);
}

void copy(char* out, size_t capacity, const char* text) {
  std::strncpy(out, text, capacity - 1);
  out[capacity - 1] = '\0';
}

// Carries out what the core asked for, then empties the outbox.
void deliver() {
  for (const bellhop::Publication& p : outbox) {
    // QoS 1 publish returns once the broker has acknowledged it.
    if (mqtt.publish(controller->topic(p.channel).c_str(), p.payload, p.qos, p.retained)) {
      if (p.event_id != 0) controller->on_delivered(p.event_id);
    } else {
      Serial.printf("mqtt: publish on %s failed\n", controller->topic(p.channel).c_str());
    }
  }
  relays.apply(outbox);
  if (outbox.save_settings) store.save_thermostat(controller->settings());
  outbox.clear();
}

void try_mqtt(const bellhop::Now& now) {
  if (now.mono_ms < mqtt_retry_at_ms) return;
  const MqttCredentials credentials{prov::kDeviceId, prov::kMqttUsername, prov::kMqttPassword};
  const char* status_topic = controller->topic(bellhop::Channel::kStatus).c_str();
  static const char kWill[] = "offline";  // RoomController::will_payload(), NUL-terminated
  const bool up = mqtt.connect(credentials, status_topic, kWill) &&
                  mqtt.subscribe(controller->topic(bellhop::Channel::kCmd).c_str()) &&
                  mqtt.subscribe(controller->broadcast_topic().c_str());
  if (!up) {
    mqtt.disconnect();
    const uint32_t delay_ms = mqtt_backoff.next_delay_ms(esp_random());
    mqtt_retry_at_ms = now.mono_ms + delay_ms;
    Serial.printf("mqtt: down, retry in %lu ms\n", static_cast<unsigned long>(delay_ms));
    return;
  }
  Serial.println("mqtt: connected");
  mqtt_backoff.reset();
  mqtt_was_up = true;
  controller->on_connected(device_clock.now(), outbox);
  deliver();
}

void service_mqtt(bool wifi_up) {
  const bellhop::Now now = device_clock.now();
  if (mqtt_was_up && (!wifi_up || !mqtt.poll())) {
    mqtt_was_up = false;
    controller->on_disconnected();
    mqtt_retry_at_ms = now.mono_ms + mqtt_backoff.next_delay_ms(esp_random());
    Serial.println("mqtt: connection lost");
  }
  // Commands are judged against the clock: no session before SNTP has answered.
  if (!mqtt_was_up && wifi_up && now.unix_ms != 0) try_mqtt(now);
  while (mqtt.take(inbound)) {
    controller->on_message(inbound.topic, inbound.payload_view(), device_clock.now(), outbox);
    deliver();
  }
}

}  // namespace

void setup() {
  relays.begin();  // first: the relays must be off whatever happens next
  Serial.begin(115200);
  pinMode(board::kStatusLedPin, OUTPUT);

  network.mqtt_port = static_cast<uint16_t>(prov::kMqttPort);
  copy(network.wifi_ssid, sizeof network.wifi_ssid, prov::kWifiSsid);
  copy(network.wifi_password, sizeof network.wifi_password, prov::kWifiPassword);
  copy(network.mqtt_host, sizeof network.mqtt_host, prov::kMqttHost);
  copy(network.ntp_server, sizeof network.ntp_server, prov::kNtpServer[0] != '\0' ? prov::kNtpServer : prov::kMqttHost);
  copy(network.timezone, sizeof network.timezone, prov::kTimezone);
  store.load_network(network);

  bellhop::ControllerConfig config;
  config.telemetry_interval_ms = network.telemetry_interval_ms;
  config.fitted = board::kFitted;
  const bellhop::DeviceIdentity identity{
      prov::kHotelId, prov::kDeviceId,
      bellhop::device_kind_from(prov::kDeviceKind).value_or(bellhop::DeviceKind::kThermostat), kFirmwareVersion};
  controller.emplace(identity, store.load_thermostat(), config);
  if (!controller->valid()) {
    // Nothing sensible can be published under bad ids; keep the relays off
    // and say why, rather than reboot over and over.
    Serial.println("provisioning: hotel or device id breaks the id rule; regenerate provisioning.h");
  }

  sensors.begin();
  controller->set_door_at_boot(sensors.door_open(), device_clock.now());
  wifi.begin(prov::kDeviceId, network.wifi_ssid, network.wifi_password);
  device_clock.begin(network.ntp_server, network.timezone);
  mqtt.begin(network.mqtt_host, network.mqtt_port, prov::kCaCert);

  start_loop_watchdog();
  Serial.printf("bellhop %s: %s/%s\n", kFirmwareVersion, prov::kHotelId, prov::kDeviceId);
}

void loop() {
  loop_beat_us = esp_timer_get_time();
  if (!controller->valid()) {
    delay(1000);
    return;
  }
  const bool wifi_up = wifi.poll(device_clock.now().mono_ms);
  service_mqtt(wifi_up);

  bellhop::Now now = device_clock.now();
  if (now.mono_ms >= next_reading_ms) {
    next_reading_ms = now.mono_ms + board::kSensorPeriodMs;
    bellhop::Readings readings = sensors.read();
    if (wifi_up) readings.rssi = wifi.rssi();
    controller->on_readings(readings, now, outbox);
    deliver();
  }
  if (const std::optional<bool> open = sensors.door_change(now.mono_ms)) {
    controller->on_door(*open, now, outbox);
    deliver();
  }
  if (sensors.button_pressed(now.mono_ms)) {
    controller->on_button(now, outbox);
    deliver();
  }
  controller->tick(now, outbox);
  deliver();

  digitalWrite(board::kStatusLedPin, controller->connected() ? HIGH : LOW);
  delay(10);
}
