#include "wifi_link.h"

#include <WiFi.h>
#include <esp_system.h>

void WifiLink::begin(const char* hostname, const char* ssid, const char* password) {
  ssid_ = ssid;
  password_ = password;
  WiFi.setHostname(hostname);  // before mode(): the Arduino core applies it when the interface starts
  WiFi.mode(WIFI_STA);
  // This class owns reconnection, with back-off and jitter.
  WiFi.setAutoReconnect(false);
  WiFi.persistent(false);  // credentials come from provisioning or NVS, never rewritten
}

void WifiLink::join(uint64_t now_ms) {
  if (ssid_[0] == '\0') {
    Serial.println("wifi: no SSID provisioned (provisioning header or NVS wifi_ssid)");
    state_ = State::kWaiting;
    retry_at_ms_ = now_ms + 60000;
    return;
  }
  WiFi.begin(ssid_, password_);
  state_ = State::kJoining;
  since_ms_ = now_ms;
}

bool WifiLink::poll(uint64_t now_ms) {
  const bool up = WiFi.status() == WL_CONNECTED;
  switch (state_) {
    case State::kIdle:
      join(now_ms);
      break;
    case State::kJoining:
      if (up) {
        state_ = State::kUp;
        backoff_.reset();
        Serial.printf("wifi: connected, %s\n", WiFi.localIP().toString().c_str());
      } else if (now_ms - since_ms_ >= kJoinTimeoutMs) {
        WiFi.disconnect();
        state_ = State::kWaiting;
        const uint32_t delay_ms = backoff_.next_delay_ms(esp_random());
        retry_at_ms_ = now_ms + delay_ms;
        Serial.printf("wifi: join failed, retry in %lu ms\n", static_cast<unsigned long>(delay_ms));
      }
      break;
    case State::kUp:
      if (!up) {
        Serial.println("wifi: lost");
        WiFi.disconnect();
        state_ = State::kWaiting;
        retry_at_ms_ = now_ms + backoff_.next_delay_ms(esp_random());
      }
      break;
    case State::kWaiting:
      if (now_ms >= retry_at_ms_) join(now_ms);
      break;
  }
  return state_ == State::kUp;
}

int WifiLink::rssi() const { return state_ == State::kUp ? WiFi.RSSI() : 0; }
