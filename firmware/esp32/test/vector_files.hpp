// Reading the shared vectors (firmware/vectors/*.json) in host tests.
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "bellhop/messages.hpp"

namespace bellhop::test {

// ordered_json keeps the key order, which the payloads' byte order depends on.
using Json = nlohmann::ordered_json;

inline std::string vectors_dir() { return BELLHOP_VECTORS_DIR; }

inline Json load_vectors(const std::string& file) {
  std::ifstream in(vectors_dir() + "/" + file, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << vectors_dir() << "/" << file);
  std::stringstream text;
  text << in.rdbuf();
  return Json::parse(text.str());
}

inline std::string base64_decode(const std::string& in) {
  std::string out;
  std::uint32_t buf = 0;
  int bits = 0;
  for (char c : in) {
    int v = -1;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    if (c >= '0' && c <= '9') v = c - '0' + 52;
    if (c == '+') v = 62;
    if (c == '/') v = 63;
    if (v < 0) continue;  // padding
    buf = (buf << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xFF));
    }
  }
  return out;
}

// A vector's payload, given as text or (for bytes that are not UTF-8) base64.
inline std::string payload_of(const Json& v) {
  if (v.contains("payload_base64")) return base64_decode(v.at("payload_base64").get<std::string>());
  return v.at("payload").get<std::string>();
}

// Entries viewing the strings inside `obj` (which must outlive them).
inline Entries entries_of(const Json& obj) {
  Entries out;
  for (const auto& [name, value] : obj.items()) {
    Value v;
    if (value.is_boolean()) v = Value::of(value.get<bool>());
    if (value.is_number()) v = Value::of(value.get<double>());
    if (value.is_string()) v = Value::of(std::string_view(value.get_ref<const std::string&>()));
    REQUIRE(out.add(name, v));
  }
  return out;
}

inline Json json_of(const Value& v) {
  switch (v.type) {
    case Value::Type::kNull: return nullptr;
    case Value::Type::kBool: return v.boolean;
    case Value::Type::kNumber: return v.number;
    case Value::Type::kText: return std::string(v.text);
  }
  return nullptr;
}

// Entries as JSON, numbers as doubles so 1500 and 1.5e3 compare equal.
inline Json json_of(const Entries& entries) {
  Json out = Json::object();
  for (const Entry& e : entries) out[std::string(e.name)] = json_of(e.value);
  return out;
}

inline Json with_numbers_as_doubles(const Json& in) {
  if (in.is_number()) return in.get<double>();
  if (!in.is_object()) return in;
  Json out = Json::object();
  for (const auto& [k, v] : in.items()) out[k] = with_numbers_as_doubles(v);
  return out;
}

}  // namespace bellhop::test
