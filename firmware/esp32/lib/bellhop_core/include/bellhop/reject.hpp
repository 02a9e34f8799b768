// Why the protocol core refused a topic or a payload.
//
// The names returned by reject_name() are the stable codes of device
// protocol v1: the same strings as the Python codec's RejectReason and the
// "error" fields of firmware/vectors/*.json. Add codes; never rename them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bellhop {

enum class Reject : std::uint8_t {
  kNone = 0,  // accepted
  // Topic
  kBadTopic,
  kForeignHotel,
  kUnknownChannel,
  kWrongDirection,
  kBadId,
  // Envelope
  kEmpty,
  kTooLarge,
  kNotUtf8,
  kMalformedJson,
  kDuplicateKey,
  kTooDeep,
  kNotObject,
  kUnsupportedVersion,
  // Fields
  kMissingField,
  kWrongType,
  kNonFinite,
  kOutOfRange,
  kBadName,
  kTooLong,
  kTooManyEntries,
  kInvalidValue,
};

inline constexpr std::size_t kRejectCount = static_cast<std::size_t>(Reject::kInvalidValue) + 1;

// "bad_topic", "empty", ...; "none" for kNone.
const char* reject_name(Reject reason);

// Counts rejects by reason, so a device (or a test) can report what it refused.
class RejectCounters {
 public:
  void count(Reject reason) {
    if (reason != Reject::kNone) ++counts_[static_cast<std::size_t>(reason)];
  }
  std::uint32_t operator[](Reject reason) const { return counts_[static_cast<std::size_t>(reason)]; }
  std::uint32_t total() const {
    std::uint32_t sum = 0;
    for (std::uint32_t c : counts_) sum += c;
    return sum;
  }

 private:
  std::uint32_t counts_[kRejectCount] = {};
};

}  // namespace bellhop
