// A strict, bounded JSON reader for the protocol's small payloads.
//
// validate() checks a whole document in one pass without storing anything;
// afterwards the codec reads it in place: Members/Elements walk a container,
// find() looks a key up, read_number() and decode_text() convert leaves.
// Nothing allocates; the only state is a recursion depth of kMaxNesting.
//
// It accepts and rejects what Python's json module (as the edge's codec uses
// it) accepts and rejects, with the same first error: NaN and Infinity are
// reported as kNonFinite when met, a duplicate key when its object closes.
// Every function but valid_utf8() and validate() expects a validated input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bellhop/reject.hpp"

namespace bellhop::json {

// Deeper documents are refused with kTooDeep (Python's limit is ~1000 frames;
// the protocol itself allows 4 levels, so nothing valid gets near this).
inline constexpr std::size_t kMaxNesting = 32;

// Strict UTF-8 as Python's bytes.decode(): no overlong forms, no encoded
// surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view bytes);

// One JSON value with optional whitespace around it. Returns kNone,
// kMalformedJson, kNonFinite, kDuplicateKey or kTooDeep.
Reject validate(std::string_view text);

enum class Kind : std::uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

// Kind of a raw value (as Members/Elements return it: no surrounding spaces).
Kind kind_of(std::string_view raw);

// The members of a raw object, in document order; keys are raw (quoted).
class Members {
 public:
  explicit Members(std::string_view raw_object);
  bool next(std::string_view& raw_key, std::string_view& raw_value);

 private:
  std::string_view text_;
  std::size_t pos_;
};

// The elements of a raw array, in document order.
class Elements {
 public:
  explicit Elements(std::string_view raw_array);
  bool next(std::string_view& raw_value);

 private:
  std::string_view text_;
  std::size_t pos_;
};

std::size_t count_members(std::string_view raw_object);

// The value of member `key` (plain ASCII), compared after unescaping.
bool find(std::string_view raw_object, std::string_view key, std::string_view& raw_value);

// Whether a raw (quoted) string decodes to `plain`.
bool text_equals(std::string_view raw_string, std::string_view plain);

// Whether two raw strings decode to the same text.
bool same_text(std::string_view raw_a, std::string_view raw_b);

struct TextInfo {
  std::size_t bytes = 0;     // decoded UTF-8 length (never more than the raw length)
  std::size_t chars = 0;     // code points, a surrogate pair counting once
  bool lone_surrogate = false;  // an unpaired \uD800-\uDFFF escape: not valid text
};
TextInfo text_info(std::string_view raw_string);

// Writes the decoded text of a raw string to `out`, which must hold
// text_info(raw).bytes; returns the bytes written.
std::size_t decode_text(std::string_view raw_string, char* out);

struct Number {
  bool integral = false;   // written without fraction or exponent (a JSON "int")
  bool negative = false;
  bool magnitude_overflow = false;  // |value| does not fit 64 bits
  std::uint64_t magnitude = 0;      // exact |value| of an integral number
  double value = 0;                 // may be +/-inf for a huge literal
};

// Converts a raw number that sits inside a container (so a delimiter follows it).
Number read_number(std::string_view raw);

}  // namespace bellhop::json
