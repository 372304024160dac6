#include "storage/crc32c.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace stead::storage {
namespace {

TEST(Crc32c, MatchesPublishedCheckValues) {
  // RFC 3720 (iSCSI) appendix B.4 test vectors and the standard "123456789" check.
  const struct {
    const char* name;
    std::string input;
    uint32_t want;
  } cases[] = {
      {"check string", "123456789", 0xE3069283},
      {"32 zero bytes", std::string(32, '\0'), 0x8A9136AA},
      {"32 0xff bytes", std::string(32, '\xff'), 0x62A8AB43},
      {"empty", "", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Crc32c(c.input), c.want);
    EXPECT_EQ(internal::Crc32cPortableForTesting(0, c.input), c.want);
  }
}

TEST(Crc32c, ExtendEqualsOneShotAndPathsAgree) {
  std::mt19937_64 random(7);
  for (int round = 0; round < 200; ++round) {
    std::string data(random() % 300, '\0');
    for (char& c : data) c = static_cast<char>(random());
    const size_t split = data.empty() ? 0 : random() % data.size();
    const uint32_t whole = Crc32c(data);
    EXPECT_EQ(Crc32cExtend(Crc32c(data.substr(0, split)), data.substr(split)), whole);
    EXPECT_EQ(internal::Crc32cPortableForTesting(0, data), whole);
  }
}

TEST(Crc32c, DetectsASingleBitFlip) {
  std::string data(4096, 'x');
  const uint32_t before = Crc32c(data);
  data[2048] ^= 0x10;
  EXPECT_NE(Crc32c(data), before);
}

}  // namespace
}  // namespace stead::storage
