// Wi-Fi station link with its own reconnect back-off (never a reboot).
#pragma once

#include <cstdint>

#include "bellhop/backoff.hpp"

class WifiLink {
 public:
  void begin(const char* hostname, const char* ssid, const char* password);
  // Drives the link; call every loop. True while connected.
  bool poll(uint64_t now_ms);
  int rssi() const;

 private:
  enum class State : uint8_t { kIdle, kJoining, kUp, kWaiting };
  static constexpr uint32_t kJoinTimeoutMs = 15000;

  void join(uint64_t now_ms);

  const char* ssid_ = "";
  const char* password_ = "";
  State state_ = State::kIdle;
  uint64_t since_ms_ = 0;
  uint64_t retry_at_ms_ = 0;
  bellhop::Backoff backoff_{{2000, 60000}};
};
