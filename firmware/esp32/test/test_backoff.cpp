#include <doctest/doctest.h>

#include "bellhop/backoff.hpp"

namespace bellhop {

TEST_CASE("back-off doubles from the initial delay up to the cap") {
  Backoff backoff({1000, 8000});
  // With the largest jitter the delay is the whole base.
  CHECK(backoff.next_delay_ms(500) == 1000);
  CHECK(backoff.next_delay_ms(1000) == 2000);
  CHECK(backoff.next_delay_ms(2000) == 4000);
  CHECK(backoff.next_delay_ms(4000) == 8000);
  CHECK(backoff.next_delay_ms(4000) == 8000);  // capped
  CHECK(backoff.failures() == 5);
}

TEST_CASE("jitter keeps every delay within the upper half of its base") {
  Backoff backoff({1000, 60000});
  const std::uint32_t randoms[] = {0, 1, 499, 500, 12345, 0xFFFFFFFFu, 77, 3, 999999, 42};
  std::uint32_t base = 1000;
  for (std::uint32_t r : randoms) {
    const std::uint32_t d = backoff.next_delay_ms(r);
    INFO("base " << base << " random " << r);
    CHECK(d >= base / 2);
    CHECK(d <= base);
    base = base * 2 > 60000 ? 60000 : base * 2;
  }
}

TEST_CASE("different random draws spread devices that failed together") {
  Backoff a({1000, 60000});
  Backoff b({1000, 60000});
  for (int i = 0; i < 6; ++i) {
    a.next_delay_ms(1);
    b.next_delay_ms(1);
  }
  CHECK(a.next_delay_ms(0) == 30000);
  CHECK(b.next_delay_ms(29999) == 59999);
}

TEST_CASE("a successful connection starts the back-off again") {
  Backoff backoff({500, 60000});
  for (int i = 0; i < 10; ++i) backoff.next_delay_ms(0);
  CHECK(backoff.next_delay_ms(0) == 30000);
  backoff.reset();
  CHECK(backoff.failures() == 0);
  CHECK(backoff.next_delay_ms(250) == 500);
}

TEST_CASE("many failures never overflow past the cap") {
  Backoff backoff({1000, 60000});
  std::uint32_t last = 0;
  for (int i = 0; i < 100000; ++i) last = backoff.next_delay_ms(0xFFFFFFFFu);
  CHECK(last <= 60000);
  CHECK(last >= 30000);
}

TEST_CASE("a nonsensical policy is repaired, not trusted") {
  Backoff backoff({0, 0});
  CHECK(backoff.next_delay_ms(0) == 1);
  CHECK(backoff.next_delay_ms(5) == 1);
}

}  // namespace bellhop
