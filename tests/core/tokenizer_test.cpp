#include "core/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace tidal {
namespace {

TEST(LoadTokenizer, ByteSpec) {
  auto tok = LoadTokenizer("byte");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->VocabSize(), 260);
  EXPECT_EQ((*tok)->Encode("hi"), (std::vector<TokenId>{'h', 'i'}));
}

TEST(LoadTokenizer, DirectoryWithTokenizerJson) {
  auto tok = LoadTokenizer(std::string(TIDAL_SOURCE_DIR) + "/tests/fixtures/qwen3-tokenizer");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->VocabSize(), 151669);
  EXPECT_EQ((*tok)->Encode("Hello, world!"), (std::vector<TokenId>{9707, 11, 1879, 0}));
  EXPECT_NE((*tok)->Describe().find("151669 ids"), std::string::npos) << (*tok)->Describe();
}

TEST(LoadTokenizer, BadSpecsSayWhy) {
  auto none = LoadTokenizer("/no/such/dir");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("/no/such/dir"), std::string::npos);
  const std::string empty_dir = std::string(TIDAL_BINARY_DIR) + "/tokenizer_test_empty_dir";
  std::filesystem::create_directories(empty_dir);
  auto empty = LoadTokenizer(empty_dir);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(empty.status().message().find("no tokenizer.json"), std::string::npos);
}

}  // namespace
}  // namespace tidal
