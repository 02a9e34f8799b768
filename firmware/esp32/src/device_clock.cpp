#include "device_clock.h"

#include <Arduino.h>
#include <esp_timer.h>
#include <sys/time.h>

#include <ctime>

namespace {

// Any earlier time means SNTP has not answered yet (the RTC starts at 1970).
constexpr time_t kValidAfter = 1700000000;

}  // namespace

void DeviceClock::begin(const char* ntp_server, const char* timezone) { configTzTime(timezone, ntp_server); }

bellhop::Now DeviceClock::now() const {
  bellhop::Now n;
  n.mono_ms = static_cast<uint64_t>(esp_timer_get_time() / 1000);
  timeval tv{};
  gettimeofday(&tv, nullptr);
  if (tv.tv_sec < kValidAfter) return n;
  n.unix_ms = static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec / 1000);
  tm local{};
  localtime_r(&tv.tv_sec, &local);
  n.local_minute = static_cast<uint16_t>(local.tm_hour * 60 + local.tm_min);
  return n;
}
