// Device protocol v1 payloads: decode with validation, encode canonically.
//
// The C++ twin of the edge's Python codec (bellhop_devices.codec): both pass
// the shared vectors in firmware/vectors/. Decoding validates as strictly as
// the edge does and returns the first problem as a Reject code; encoding
// trusts its input and prints exactly the bytes the vectors specify.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "bellhop/messages.hpp"
#include "bellhop/reject.hpp"

namespace bellhop {

// The largest payload read. Python's default; also the Decoder's text space,
// so a caller's larger max_bytes is clamped to it.
inline constexpr std::size_t kMaxPayloadBytes = 4096;

// Decodes payloads into messages whose text lives in the decoder: views stay
// valid until the decoder's next call. About 4 KiB: keep one, not one per call.
class Decoder {
 public:
  // What a device published (edge side). `out.device_id` points into `topic`.
  // On `status` the bare payload `offline` is the Last Will; `cmd` is
  // refused with kWrongDirection.
  Reject decode(std::string_view topic, std::string_view payload, std::string_view hotel_id,
                Decoded& out, std::size_t max_bytes = kMaxPayloadBytes);

  // A `cmd` (or broadcast) payload (device side).
  Reject decode_command(std::string_view payload, Command& out,
                        std::size_t max_bytes = kMaxPayloadBytes);

 private:
  friend class FieldReader;
  std::array<char, kMaxPayloadBytes> text_{};
  std::size_t used_ = 0;
};

// Whether `value` is within the protocol's range for a metric (or value)
// called `name`: the named ranges, else +/-kMetricLimit. A device checks its
// readings with this, since one value out of range gets a whole telemetry
// message rejected by the gateway.
bool metric_in_range(std::string_view name, double value);

// Canonical payloads. Each returns the bytes written to `out`, or 0 when
// they do not fit in `capacity` (or a number is not finite).
std::size_t encode(const Telemetry& msg, char* out, std::size_t capacity);
std::size_t encode(const StateReport& msg, char* out, std::size_t capacity);
std::size_t encode(const Event& msg, char* out, std::size_t capacity);
std::size_t encode(const Status& msg, char* out, std::size_t capacity);
std::size_t encode(const Ack& msg, char* out, std::size_t capacity);
std::size_t encode(const DeviceMessage& msg, char* out, std::size_t capacity);
// Edge side: the payload of a command.
std::size_t encode_command(const Command& cmd, char* out, std::size_t capacity);

}  // namespace bellhop
