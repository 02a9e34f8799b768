#include "bellhop/backoff.hpp"

namespace bellhop {

Backoff::Backoff(BackoffPolicy policy) : policy_(policy) {
  if (policy_.initial_ms == 0) policy_.initial_ms = 1;
  if (policy_.max_ms < policy_.initial_ms) policy_.max_ms = policy_.initial_ms;
}

std::uint32_t Backoff::next_delay_ms(std::uint32_t random) {
  std::uint64_t base = policy_.initial_ms;
  for (std::uint32_t i = 0; i < failures_ && base < policy_.max_ms; ++i) base *= 2;
  if (base > policy_.max_ms) base = policy_.max_ms;
  if (failures_ < UINT32_MAX) ++failures_;
  const std::uint64_t half = base / 2;
  return static_cast<std::uint32_t>(base - half + random % (half + 1));
}

}  // namespace bellhop
