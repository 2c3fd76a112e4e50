#include "core/hash.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tidal {
namespace {

TEST(HashTest, Crc32cCheckValues) {
  const char* s = "123456789";
  EXPECT_EQ(Crc32c(s, 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(Crc32cPortable(s, 9), 0xE3069283u);
  EXPECT_EQ(Crc32c(s + 4, 5, Crc32c(s, 4)), 0xE3069283u);
  EXPECT_EQ(Crc32cPortable(s + 4, 5, Crc32cPortable(s, 4)), 0xE3069283u);
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
}

TEST(HashTest, HardwareAndPortablePathsAgree) {
  std::mt19937 rng(3);
  std::string buf(4099, '\0');
  for (char& c : buf) c = static_cast<char>(rng());
  for (size_t off : {0, 1, 3, 7}) {
    for (size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 4000}) {
      ASSERT_EQ(Crc32c(buf.data() + off, n, 0x1234), Crc32cPortable(buf.data() + off, n, 0x1234))
          << off << " " << n;
    }
  }
}

TEST(HashTest, SplitMix64) {
  static_assert(SplitMix64(0) == 0xe220a8397b1dcdafull);
  EXPECT_NE(SplitMix64(1), SplitMix64(2));
}

}  // namespace
}  // namespace tidal
