// Device-side at-most-once bookkeeping for commands (sans-I/O).
//
// Mirrors CommandGuard of the Python codec; firmware/vectors/commands.json
// pins its behaviour. Remembers the last `capacity` command ids with the ack
// payload each got, least recently used first out. A command runs only if
// its id is not remembered and now_ms < expires_at. Storage is fixed:
// MaxCapacity slots of an id and an ack of up to MaxAckBytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bellhop/codec.hpp"
#include "bellhop/messages.hpp"
#include "bellhop/topics.hpp"

namespace bellhop {

enum class Verdict : std::uint8_t {
  kExecute,    // run it, then record() the ack
  kDuplicate,  // seen before: resend `ack` (empty while the first run has no ack yet)
  kExpired,    // not seen before and past its expiry: send `ack`, do nothing else
};

struct GuardDecision {
  Verdict verdict = Verdict::kExecute;
  std::string_view ack;  // payload to publish on `ack`; empty for none
};

template <std::size_t MaxCapacity, std::size_t MaxAckBytes = 256>
class CommandGuard {
  static_assert(MaxCapacity >= 1);

 public:
  explicit CommandGuard(std::size_t capacity = MaxCapacity)
      : capacity_(capacity < 1 ? 1 : (capacity > MaxCapacity ? MaxCapacity : capacity)) {}

  std::size_t capacity() const { return capacity_; }

  // What to do with `cmd` arriving at `now_ms` (Unix ms). kExecute reserves
  // the id. The returned ack view is valid until the next call.
  GuardDecision check(const Command& cmd, std::uint64_t now_ms) {
    if (Slot* seen = lookup(cmd.id)) {
      seen->used = ++tick_;
      return {Verdict::kDuplicate, seen->ack()};
    }
    Slot& slot = reserve(cmd.id);
    if (now_ms >= cmd.expires_at) {
      const Ack ack{cmd.id, AckStatus::kExpired, std::nullopt, kExpiredError};
      slot.ack_size = encode(ack, slot.ack_bytes.data(), MaxAckBytes);
      return {Verdict::kExpired, slot.ack()};
    }
    return {Verdict::kExecute, {}};
  }

  // Remember the ack payload sent for command `id`, for its duplicates.
  // False when the ack is too long to keep (duplicates then get no ack).
  bool record(std::string_view id, std::string_view ack_payload) {
    Slot* slot = lookup(id);
    if (slot == nullptr) slot = &reserve(id);
    slot->used = ++tick_;
    if (ack_payload.size() > MaxAckBytes) {
      slot->ack_size = 0;
      return false;
    }
    ack_payload.copy(slot->ack_bytes.data(), ack_payload.size());
    slot->ack_size = ack_payload.size();
    return true;
  }

  std::size_t size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < capacity_; ++i) n += slots_[i].id_size != 0 ? 1 : 0;
    return n;
  }

 private:
  struct Slot {
    std::array<char, kMaxIdChars> id_bytes{};
    std::size_t id_size = 0;  // 0: free
    std::array<char, MaxAckBytes> ack_bytes{};
    std::size_t ack_size = 0;  // 0: no ack yet
    std::uint64_t used = 0;

    std::string_view id() const { return {id_bytes.data(), id_size}; }
    std::string_view ack() const { return {ack_bytes.data(), ack_size}; }
  };

  Slot* lookup(std::string_view id) {
    for (std::size_t i = 0; i < capacity_; ++i) {
      if (slots_[i].id_size != 0 && slots_[i].id() == id) return &slots_[i];
    }
    return nullptr;
  }

  // A free slot, or the least recently used one, now holding `id`.
  Slot& reserve(std::string_view id) {
    Slot* victim = &slots_[0];
    for (std::size_t i = 0; i < capacity_; ++i) {
      Slot& s = slots_[i];
      if (s.id_size == 0) {
        victim = &s;
        break;
      }
      if (s.used < victim->used) victim = &s;
    }
    // Decoded command ids are valid_command_id(): 1-64 characters.
    const std::size_t n = id.size() < kMaxIdChars ? id.size() : kMaxIdChars;
    id.copy(victim->id_bytes.data(), n);
    victim->id_size = n;
    victim->ack_size = 0;
    victim->used = ++tick_;
    return *victim;
  }

  std::array<Slot, MaxCapacity> slots_{};
  std::size_t capacity_;
  std::uint64_t tick_ = 0;
};

}  // namespace bellhop
