// Wall-clock time from SNTP (the gateway serves the LAN's time), and the
// monotonic time since boot.
#pragma once

#include "bellhop/room_controller.hpp"

class DeviceClock {
 public:
  void begin(const char* ntp_server, const char* timezone);
  // unix_ms stays 0 until the first SNTP answer; afterwards the RTC keeps
  // time across Wi-Fi outages.
  bellhop::Now now() const;
};
