// Sizes that cannot work are refused before workers start, with the keys to change.
#include "scheduler/recipe_fit.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

Recipe Tiny() {
  Recipe r = DefaultRecipe();
  r.model.size = {.hidden = 32, .layers = 1, .heads = 2, .kv_heads = 1};
  r.pool.device_set = *ParseDeviceSet("cpu:2");
  r.rollout.max_new_tokens = 8;
  return r;
}

ModelConfig ConfigOf(const Recipe& r) {
  return TinyQwen2Config(r.model.size.hidden, r.model.size.layers, r.model.size.heads, r.model.size.kv_heads, 260);
}

bool Says(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

TEST(RecipeFitTest, ATinyRunFits) {
  const Recipe r = Tiny();
  EXPECT_TRUE(CheckRecipeFits(r, ConfigOf(r), 8.0 * (1 << 30)).ok());
  const MemoryNeeds m = EstimateMemory(r, ConfigOf(r));
  EXPECT_GT(m.params, 0);
  EXPECT_GE(m.kv_cache_tokens, 9);
}

TEST(RecipeFitTest, AModelLargerThanTheHostIsRefusedNamingTheSize) {
  Recipe r = Tiny();
  r.model.size.hidden = 1000000;
  absl::Status s = CheckRecipeFits(r, ConfigOf(r), 64.0 * (1 << 30));
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Says(s, "model.size (hidden 1000000")) << s;
  EXPECT_TRUE(Says(s, "this host")) << s;
  // Without a memory figure (CUDA pools) there is no memory check.
  EXPECT_TRUE(CheckRecipeFits(r, ConfigOf(r), std::nullopt).ok());
}

TEST(RecipeFitTest, AKvCacheThatCannotHoldOneCompletionIsRefused) {
  Recipe r = Tiny();
  r.rollout.block_size = 1000000000;
  absl::Status s = CheckRecipeFits(r, ConfigOf(r), std::nullopt);
  EXPECT_TRUE(Says(s, "rollout.block_size (1000000000): one KV block takes")) << s;
  r = Tiny();
  r.rollout.kv_blocks = 1;
  r.rollout.block_size = 4;
  s = CheckRecipeFits(r, ConfigOf(r), std::nullopt);
  EXPECT_TRUE(Says(s, "fewer than one completion needs (12")) << s;
  r = Tiny();
  r.rollout.max_new_tokens = 4096;
  s = CheckRecipeFits(r, ConfigOf(r), std::nullopt);
  EXPECT_TRUE(Says(s, "leaves no room for a prompt under the model length of 4096")) << s;
}

}  // namespace
}  // namespace tidal::scheduler
