// The bounded JSON reader and writer, beyond what the shared vectors pin.
#include <doctest/doctest.h>

#include <string>

#include "bellhop/codec.hpp"
#include "bellhop/json_reader.hpp"
#include "bellhop/json_writer.hpp"

namespace bellhop {
namespace {

std::string number_text(double v) {
  char buf[32];
  const std::size_t n = json::format_number(v, buf);
  return {buf, n};
}

}  // namespace

TEST_CASE("numbers print as Python's json module prints them") {
  CHECK(number_text(21.0) == "21");
  CHECK(number_text(-0.0) == "0");
  CHECK(number_text(22.5) == "22.5");
  CHECK(number_text(0.1) == "0.1");
  CHECK(number_text(-3.5) == "-3.5");
  CHECK(number_text(1.0 / 3.0) == "0.3333333333333333");
  CHECK(number_text(0.0001) == "0.0001");
  CHECK(number_text(0.00001) == "1e-05");
  CHECK(number_text(1.5e-7) == "1.5e-07");
  CHECK(number_text(123456.789) == "123456.789");
  CHECK(number_text(1e15 + 0.5) == "1000000000000000.5");
  CHECK(number_text(1e16) == "10000000000000000");
  CHECK(number_text(-1763790000000.0) == "-1763790000000");
}

TEST_CASE("the writer refuses what does not fit rather than truncating") {
  Telemetry t;
  t.ts = 1763790000000;
  t.seq = 1;
  t.metrics.add("temperature", Value::of(21.5));
  char small[40];
  CHECK(encode(t, small, sizeof small) == 0);
  char exact[80];
  const std::size_t n = encode(t, exact, sizeof exact);
  REQUIRE(n > 0);
  char tight[80];
  CHECK(encode(t, tight, n) == n);
  CHECK(encode(t, tight, n - 1) == 0);
}

TEST_CASE("a non-finite number is never written") {
  Telemetry t;
  t.metrics.add("temperature", Value::of(0.0 / 0.0));
  char buf[128];
  CHECK(encode(t, buf, sizeof buf) == 0);
}

TEST_CASE("nesting beyond the reader's bound is refused, not recursed into") {
  std::string deep = "{\"ts\":1,\"seq\":1,\"metrics\":{},\"x\":";
  for (int i = 0; i < 2000; ++i) deep += '[';
  for (int i = 0; i < 2000; ++i) deep += ']';
  deep += '}';
  CHECK(json::validate(deep) == Reject::kTooDeep);
}

TEST_CASE("escaped keys are the same keys") {
  Decoder decoder;
  Command cmd;
  // "n\u0061me" is "name": present once, and a duplicate when written twice.
  CHECK(decoder.decode_command(
            R"({"id":"c-1","n\u0061me":"lock","params":{},"expires_at":1})", cmd) == Reject::kNone);
  CHECK(cmd.name == "lock");
  CHECK(decoder.decode_command(
            R"({"id":"c-1","name":"lock","n\u0061me":"x","params":{},"expires_at":1})", cmd) ==
        Reject::kDuplicateKey);
}

TEST_CASE("escapes decode to UTF-8, surrogate pairs to one character") {
  Decoder decoder;
  Command cmd;
  REQUIRE(decoder.decode_command(
              R"({"id":"c-1","name":"say","params":{"text":"caf\u00e9 \ud83d\ude00 \"q\" a\/b\n"},"expires_at":1})",
              cmd) == Reject::kNone);
  const Value* text = cmd.params.find("text");
  REQUIRE(text != nullptr);
  CHECK(text->text == "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" a/b\n");
}

TEST_CASE("text limits count characters, not bytes") {
  Decoder decoder;
  Command cmd;
  std::string e128;
  for (int i = 0; i < 128; ++i) e128 += "\xc3\xa9";  // 128 characters, 256 bytes
  CHECK(decoder.decode_command(R"({"id":"c-1","name":"say","params":{"t":")" + e128 +
                                   R"("},"expires_at":1})",
                               cmd) == Reject::kNone);
  CHECK(decoder.decode_command(R"({"id":"c-1","name":"say","params":{"t":")" + e128 +
                                   R"(x"},"expires_at":1})",
                               cmd) == Reject::kTooLong);
}

TEST_CASE("malformed UTF-8 is refused before anything is parsed") {
  Decoder decoder;
  Command cmd;
  const char* bad[] = {"{\"id\":\"\xc0\xaf\"}", "{\"id\":\"\xed\xa0\x80\"}", "{\"id\":\"\xf4\x90\x80\x80\"}",
                       "{\"id\":\"\xe2\x82\"}"};
  for (const char* payload : bad) CHECK(decoder.decode_command(payload, cmd) == Reject::kNotUtf8);
}

TEST_CASE("a payload is read only up to the decoder's own bound") {
  Decoder decoder;
  Command cmd;
  const std::string big(kMaxPayloadBytes + 1, ' ');
  CHECK(decoder.decode_command(big, cmd, 1 << 20) == Reject::kTooLarge);
}

}  // namespace bellhop
