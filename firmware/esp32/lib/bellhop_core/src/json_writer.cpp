#include "bellhop/json_writer.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace bellhop::json {
namespace {

std::size_t format_unsigned(std::uint64_t value, char* out) {
  char digits[20];
  std::size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  for (std::size_t k = 0; k < n; ++k) out[k] = digits[n - 1 - k];
  return n;
}

}  // namespace

std::size_t format_number(double value, char (&out)[32]) {
  if (value == std::floor(value) && std::fabs(value) < 9.2e18) {
    // Integral: Python's codec prints int(value). (-0.0 prints as 0.)
    const bool negative = value < 0;
    const auto magnitude = static_cast<std::uint64_t>(std::fabs(value));
    std::size_t n = 0;
    if (negative && magnitude != 0) out[n++] = '-';
    return n + format_unsigned(magnitude, out + n);
  }
  if (value == std::floor(value)) {
    // Beyond 64 bits every double is integral; print all its digits. Above
    // the protocol's bounds anyway, so 32 bytes may cut it short: say so.
    const int n = std::snprintf(out, sizeof out, "%.0f", value);
    return n > 0 && static_cast<std::size_t>(n) < sizeof out ? static_cast<std::size_t>(n) : 0;
  }
  // The fewest significant digits that read back exactly; %g then picks
  // fixed or exponent notation as repr() does for non-integral values.
  for (int precision = 1; precision <= 17; ++precision) {
    const int n = std::snprintf(out, sizeof out, "%.*g", precision, value);
    if (std::strtod(out, nullptr) == value) return static_cast<std::size_t>(n);
  }
  return static_cast<std::size_t>(std::snprintf(out, sizeof out, "%.17g", value));
}

void Writer::put(char c) {
  if (size_ < capacity_) {
    out_[size_++] = c;
  } else {
    ok_ = false;
  }
}

void Writer::put(std::string_view s) {
  if (s.size() > capacity_ - size_) {
    ok_ = false;
    return;
  }
  for (char c : s) out_[size_++] = c;
}

void Writer::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_) put(',');
  first_ = false;
}

Writer& Writer::begin_object() {
  separate();
  put('{');
  first_ = true;
  return *this;
}

Writer& Writer::end_object() {
  put('}');
  first_ = false;
  return *this;
}

Writer& Writer::key(std::string_view name) {
  text(name);
  put(':');
  after_key_ = true;
  return *this;
}

Writer& Writer::text(std::string_view value) {
  separate();
  put('"');
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': put("\\\""); break;
      case '\\': put("\\\\"); break;
      case '\n': put("\\n"); break;
      case '\r': put("\\r"); break;
      case '\t': put("\\t"); break;
      case '\b': put("\\b"); break;
      case '\f': put("\\f"); break;
      default:
        if (c < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          const char escaped[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
          put(std::string_view(escaped, sizeof escaped));
        } else {
          put(ch);
        }
    }
  }
  put('"');
  return *this;
}

Writer& Writer::number(double value) {
  char buf[32];
  const std::size_t n = format_number(value, buf);
  separate();
  if (n == 0 || !std::isfinite(value)) {
    ok_ = false;  // JSON has no NaN or Infinity
    return *this;
  }
  put(std::string_view(buf, n));
  return *this;
}

Writer& Writer::integer(std::uint64_t value) {
  char buf[20];
  separate();
  put(std::string_view(buf, format_unsigned(value, buf)));
  return *this;
}

Writer& Writer::boolean(bool value) {
  separate();
  put(value ? std::string_view("true") : std::string_view("false"));
  return *this;
}

Writer& Writer::null() {
  separate();
  put("null");
  return *this;
}

Writer& Writer::value(const Value& value) {
  switch (value.type) {
    case Value::Type::kNull: return null();
    case Value::Type::kBool: return boolean(value.boolean);
    case Value::Type::kNumber: return number(value.number);
    case Value::Type::kText: return text(value.text);
  }
  return *this;
}

Writer& Writer::entries(const Entries& entries) {
  begin_object();
  for (const Entry& e : entries) key(e.name).value(e.value);
  return end_object();
}

}  // namespace bellhop::json
