// Reconnect delays: capped exponential back-off with jitter (sans-I/O).
//
// The caller supplies the randomness (esp_random() on the device, a fixed
// sequence in tests), so the policy is deterministic to test.
#pragma once

#include <cstdint>

namespace bellhop {

struct BackoffPolicy {
  std::uint32_t initial_ms = 1000;
  std::uint32_t max_ms = 60000;
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {});

  // The wait before the next attempt: a base of initial_ms doubling per
  // failure up to max_ms, of which the upper half is jitter chosen by
  // `random` ("equal jitter": never zero, never above the cap). Devices that
  // lost the gateway together so spread their reconnects.
  std::uint32_t next_delay_ms(std::uint32_t random);

  // After a successful connection: start again from initial_ms.
  void reset() { failures_ = 0; }
  std::uint32_t failures() const { return failures_; }

 private:
  BackoffPolicy policy_;
  std::uint32_t failures_ = 0;
};

}  // namespace bellhop
