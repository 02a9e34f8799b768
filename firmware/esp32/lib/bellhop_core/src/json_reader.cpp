#include "bellhop/json_reader.hpp"

#include <cstdlib>

namespace bellhop::json {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Four hex digits at s[0..3] (the caller checked they exist and are hex).
std::uint32_t hex4(const char* s) {
  std::uint32_t v = 0;
  for (int k = 0; k < 4; ++k) v = (v << 4) | static_cast<std::uint32_t>(hex_value(s[k]));
  return v;
}

bool starts_with(std::string_view text, std::size_t at, std::string_view word) {
  return text.size() - at >= word.size() && text.substr(at, word.size()) == word;
}

class Validator {
 public:
  explicit Validator(std::string_view text) : s_(text) {}

  Reject run() {
    skip_space();
    if (!value(1)) return error_;
    skip_space();
    return i_ == s_.size() ? Reject::kNone : Reject::kMalformedJson;
  }

 private:
  bool fail(Reject reason) {
    error_ = reason;
    return false;
  }
  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return s_[i_]; }
  void skip_space() {
    while (!at_end() && is_space(peek())) ++i_;
  }

  bool value(std::size_t depth) {
    if (at_end()) return fail(Reject::kMalformedJson);
    switch (peek()) {
      case '{': return object(depth);
      case '[': return array(depth);
      case '"': return string();
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      // Python's json reads these and hands them to parse_constant.
      case 'N': return starts_with(s_, i_, "NaN") ? fail(Reject::kNonFinite) : fail(Reject::kMalformedJson);
      case 'I':
        return starts_with(s_, i_, "Infinity") ? fail(Reject::kNonFinite) : fail(Reject::kMalformedJson);
      case '-':
        if (starts_with(s_, i_, "-Infinity")) return fail(Reject::kNonFinite);
        return number();
      default:
        if (is_digit(peek())) return number();
        return fail(Reject::kMalformedJson);
    }
  }

  bool literal(std::string_view word) {
    if (!starts_with(s_, i_, word)) return fail(Reject::kMalformedJson);
    i_ += word.size();
    return true;
  }

  bool digits() {
    if (at_end() || !is_digit(peek())) return fail(Reject::kMalformedJson);
    while (!at_end() && is_digit(peek())) ++i_;
    return true;
  }

  bool number() {
    if (peek() == '-') ++i_;
    if (at_end() || !is_digit(peek())) return fail(Reject::kMalformedJson);
    if (peek() == '0') {
      ++i_;
    } else {
      digits();
    }
    if (!at_end() && peek() == '.') {
      ++i_;
      if (!digits()) return false;
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++i_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++i_;
      if (!digits()) return false;
    }
    return true;
  }

  bool string() {
    ++i_;  // opening quote
    while (!at_end()) {
      const auto c = static_cast<unsigned char>(peek());
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return fail(Reject::kMalformedJson);
      if (c != '\\') {
        ++i_;
        continue;
      }
      if (i_ + 1 >= s_.size()) return fail(Reject::kMalformedJson);
      const char e = s_[i_ + 1];
      if (e == 'u') {
        if (s_.size() - i_ < 6) return fail(Reject::kMalformedJson);
        for (std::size_t k = 2; k < 6; ++k) {
          if (hex_value(s_[i_ + k]) < 0) return fail(Reject::kMalformedJson);
        }
        i_ += 6;
      } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                 e == 'r' || e == 't') {
        i_ += 2;
      } else {
        return fail(Reject::kMalformedJson);
      }
    }
    return fail(Reject::kMalformedJson);
  }

  bool array(std::size_t depth) {
    if (depth > kMaxNesting) return fail(Reject::kTooDeep);
    ++i_;
    skip_space();
    if (!at_end() && peek() == ']') {
      ++i_;
      return true;
    }
    for (;;) {
      if (!value(depth + 1)) return false;
      skip_space();
      if (at_end()) return fail(Reject::kMalformedJson);
      if (peek() == ']') {
        ++i_;
        return true;
      }
      if (peek() != ',') return fail(Reject::kMalformedJson);
      ++i_;
      skip_space();
    }
  }

  bool object(std::size_t depth) {
    if (depth > kMaxNesting) return fail(Reject::kTooDeep);
    const std::size_t start = i_;
    ++i_;
    skip_space();
    if (!at_end() && peek() == '}') {
      ++i_;
      return true;
    }
    for (;;) {
      if (at_end() || peek() != '"') return fail(Reject::kMalformedJson);
      if (!string()) return false;
      skip_space();
      if (at_end() || peek() != ':') return fail(Reject::kMalformedJson);
      ++i_;
      skip_space();
      if (!value(depth + 1)) return false;
      skip_space();
      if (at_end()) return fail(Reject::kMalformedJson);
      if (peek() == '}') {
        ++i_;
        break;
      }
      if (peek() != ',') return fail(Reject::kMalformedJson);
      ++i_;
      skip_space();
    }
    // Python builds the object (and so finds a repeated key) when it closes.
    return unique_keys(s_.substr(start, i_ - start)) ? true : fail(Reject::kDuplicateKey);
  }

  // Quadratic, but objects here have a few dozen keys at most.
  static bool unique_keys(std::string_view raw_object) {
    Members outer(raw_object);
    std::string_view key;
    std::string_view value;
    std::size_t index = 0;
    while (outer.next(key, value)) {
      Members inner(raw_object);
      std::string_view other;
      for (std::size_t k = 0; k < index && inner.next(other, value); ++k) {
        if (same_text(key, other)) return false;
      }
      ++index;
    }
    return true;
  }

  std::string_view s_;
  std::size_t i_ = 0;
  Reject error_ = Reject::kMalformedJson;
};

// End of the raw value starting at `at` in validated text.
std::size_t skip_value(std::string_view text, std::size_t at) {
  const char c = text[at];
  if (c == '"') {
    std::size_t i = at + 1;
    while (text[i] != '"') i += text[i] == '\\' ? 2 : 1;
    return i + 1;
  }
  if (c == '{' || c == '[') {
    std::size_t depth = 0;
    std::size_t i = at;
    for (;;) {
      const char d = text[i];
      if (d == '"') {
        i = skip_value(text, i);
        continue;
      }
      if (d == '{' || d == '[') ++depth;
      if (d == '}' || d == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
  }
  std::size_t i = at;
  while (i < text.size() && text[i] != ',' && text[i] != '}' && text[i] != ']' && !is_space(text[i])) {
    ++i;
  }
  return i;
}

std::size_t skip_space_at(std::string_view text, std::size_t i) {
  while (i < text.size() && is_space(text[i])) ++i;
  return i;
}

// Code points of a raw string's content, escapes resolved.
class CodePoints {
 public:
  explicit CodePoints(std::string_view raw_string)
      : p_(raw_string.data() + 1), end_(raw_string.data() + raw_string.size() - 1) {}

  // Next code point; `lone` is set for an unpaired surrogate escape.
  bool next(std::uint32_t& cp, bool& lone) {
    lone = false;
    if (p_ >= end_) return false;
    const auto c = static_cast<unsigned char>(*p_);
    if (c != '\\') {
      cp = utf8(c);
      return true;
    }
    const char e = p_[1];
    p_ += 2;
    switch (e) {
      case 'b': cp = '\b'; return true;
      case 'f': cp = '\f'; return true;
      case 'n': cp = '\n'; return true;
      case 'r': cp = '\r'; return true;
      case 't': cp = '\t'; return true;
      case 'u': break;
      default: cp = static_cast<unsigned char>(e); return true;
    }
    cp = hex4(p_);
    p_ += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
      const std::uint32_t low = hex4(p_ + 2);
      if (low >= 0xDC00 && low <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        p_ += 6;
        return true;
      }
    }
    lone = cp >= 0xD800 && cp <= 0xDFFF;
    return true;
  }

 private:
  std::uint32_t utf8(unsigned char c) {
    int extra = 0;
    std::uint32_t cp = c;
    if (c >= 0xF0) {
      extra = 3;
      cp = c & 0x07u;
    } else if (c >= 0xE0) {
      extra = 2;
      cp = c & 0x0Fu;
    } else if (c >= 0xC0) {
      extra = 1;
      cp = c & 0x1Fu;
    }
    ++p_;
    for (int k = 0; k < extra; ++k) cp = (cp << 6) | (static_cast<unsigned char>(*p_++) & 0x3Fu);
    return cp;
  }

  const char* p_;
  const char* end_;
};

std::size_t utf8_length(std::uint32_t cp) {
  if (cp < 0x80) return 1;
  if (cp < 0x800) return 2;
  if (cp < 0x10000) return 3;
  return 4;
}

}  // namespace

bool valid_utf8(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const unsigned char* end = p + bytes.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int extra = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
      cp = c & 0x1Fu;
      min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      cp = c & 0x0Fu;
      min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      cp = c & 0x07u;
      min = 0x10000;
    } else {
      return false;
    }
    if (end - p <= extra) return false;
    for (int k = 1; k <= extra; ++k) {
      if ((p[k] & 0xC0u) != 0x80u) return false;
      cp = (cp << 6) | (p[k] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += extra + 1;
  }
  return true;
}

Reject validate(std::string_view text) { return Validator(text).run(); }

Kind kind_of(std::string_view raw) {
  switch (raw.front()) {
    case '{': return Kind::kObject;
    case '[': return Kind::kArray;
    case '"': return Kind::kString;
    case 't':
    case 'f': return Kind::kBool;
    case 'n': return Kind::kNull;
    default: return Kind::kNumber;
  }
}

Members::Members(std::string_view raw_object) : text_(raw_object), pos_(1) {}

bool Members::next(std::string_view& raw_key, std::string_view& raw_value) {
  std::size_t i = skip_space_at(text_, pos_);
  if (text_[i] == ',') i = skip_space_at(text_, i + 1);
  if (text_[i] == '}') return false;
  const std::size_t key_end = skip_value(text_, i);
  raw_key = text_.substr(i, key_end - i);
  i = skip_space_at(text_, key_end);
  i = skip_space_at(text_, i + 1);  // the colon
  const std::size_t value_end = skip_value(text_, i);
  raw_value = text_.substr(i, value_end - i);
  pos_ = value_end;
  return true;
}

Elements::Elements(std::string_view raw_array) : text_(raw_array), pos_(1) {}

bool Elements::next(std::string_view& raw_value) {
  std::size_t i = skip_space_at(text_, pos_);
  if (text_[i] == ',') i = skip_space_at(text_, i + 1);
  if (text_[i] == ']') return false;
  const std::size_t end = skip_value(text_, i);
  raw_value = text_.substr(i, end - i);
  pos_ = end;
  return true;
}

std::size_t count_members(std::string_view raw_object) {
  Members members(raw_object);
  std::string_view key;
  std::string_view value;
  std::size_t n = 0;
  while (members.next(key, value)) ++n;
  return n;
}

bool find(std::string_view raw_object, std::string_view key, std::string_view& raw_value) {
  Members members(raw_object);
  std::string_view raw_key;
  std::string_view value;
  while (members.next(raw_key, value)) {
    if (text_equals(raw_key, key)) {
      raw_value = value;
      return true;
    }
  }
  return false;
}

bool text_equals(std::string_view raw_string, std::string_view plain) {
  // Fast path: no escapes, so the raw content is the text.
  const std::string_view content = raw_string.substr(1, raw_string.size() - 2);
  if (content.find('\\') == std::string_view::npos) return content == plain;
  CodePoints points(raw_string);
  std::uint32_t cp = 0;
  bool lone = false;
  std::size_t i = 0;
  while (points.next(cp, lone)) {
    if (i >= plain.size() || cp != static_cast<unsigned char>(plain[i])) return false;
    ++i;
  }
  return i == plain.size();
}

bool same_text(std::string_view raw_a, std::string_view raw_b) {
  if (raw_a == raw_b) return true;
  CodePoints a(raw_a);
  CodePoints b(raw_b);
  std::uint32_t ca = 0;
  std::uint32_t cb = 0;
  bool lone = false;
  for (;;) {
    const bool more_a = a.next(ca, lone);
    const bool more_b = b.next(cb, lone);
    if (more_a != more_b) return false;
    if (!more_a) return true;
    if (ca != cb) return false;
  }
}

TextInfo text_info(std::string_view raw_string) {
  TextInfo info;
  CodePoints points(raw_string);
  std::uint32_t cp = 0;
  bool lone = false;
  while (points.next(cp, lone)) {
    info.bytes += utf8_length(cp);
    ++info.chars;
    info.lone_surrogate = info.lone_surrogate || lone;
  }
  return info;
}

std::size_t decode_text(std::string_view raw_string, char* out) {
  CodePoints points(raw_string);
  std::uint32_t cp = 0;
  bool lone = false;
  char* o = out;
  while (points.next(cp, lone)) {
    if (cp < 0x80) {
      *o++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *o++ = static_cast<char>(0xC0 | (cp >> 6));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *o++ = static_cast<char>(0xE0 | (cp >> 12));
      *o++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *o++ = static_cast<char>(0xF0 | (cp >> 18));
      *o++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *o++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return static_cast<std::size_t>(o - out);
}

Number read_number(std::string_view raw) {
  Number n;
  std::size_t i = 0;
  if (raw[i] == '-') {
    n.negative = true;
    ++i;
  }
  n.integral = raw.find_first_of(".eE") == std::string_view::npos;
  if (n.integral) {
    for (; i < raw.size(); ++i) {
      const auto digit = static_cast<std::uint64_t>(raw[i] - '0');
      if (n.magnitude > (UINT64_MAX - digit) / 10) {
        n.magnitude_overflow = true;
        break;
      }
      n.magnitude = n.magnitude * 10 + digit;
    }
  }
  // strtod stops at the delimiter that follows every number inside a
  // container; the firmware and the host both run in the "C" locale.
  n.value = std::strtod(raw.data(), nullptr);
  return n;
}

}  // namespace bellhop::json
