// A bounded JSON writer that prints what the edge's Python encoder prints.
//
// Compact separators, keys in the order written, text as raw UTF-8 with
// only `"`, `\` and control characters escaped, integral numbers as integers
// and other numbers in their shortest round-trip form (Python's repr).
// Writes into a caller's buffer; once something does not fit, ok() turns
// false and the output must be discarded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bellhop/messages.hpp"

namespace bellhop::json {

class Writer {
 public:
  Writer(char* out, std::size_t capacity) : out_(out), capacity_(capacity) {}

  Writer& begin_object();
  Writer& end_object();
  Writer& key(std::string_view name);
  Writer& text(std::string_view value);
  Writer& number(double value);
  Writer& integer(std::uint64_t value);
  Writer& boolean(bool value);
  Writer& null();
  Writer& value(const Value& value);
  // An object of the entries, in their order.
  Writer& entries(const Entries& entries);

  bool ok() const { return ok_; }
  std::size_t size() const { return size_; }
  std::string_view view() const { return {out_, size_}; }

 private:
  void separate();
  void put(char c);
  void put(std::string_view s);

  char* out_;
  std::size_t capacity_;
  std::size_t size_ = 0;
  bool ok_ = true;
  bool first_ = true;      // nothing written yet at the current level
  bool after_key_ = false;  // a key was written, its value comes next
};

// Shortest text of a finite double that reads back as the same double, as
// Python's repr() writes it but with integral values as integers ("21", not
// "21.0"). Needs 32 bytes; returns the length.
std::size_t format_number(double value, char (&out)[32]);

}  // namespace bellhop::json
