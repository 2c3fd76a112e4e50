#include "core/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tests/core/temp_dir.h"

namespace tidal {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(AtomicFileTest, ReplacesTheWholeFileAndLeavesNoTemporary) {
  testing_util::TempDir dir;
  const std::string path = dir.path() + "/state.json";
  ASSERT_TRUE(WriteFileAtomic(path, "first, a longer text").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  EXPECT_EQ(Slurp(path), "second");  // replaced, not overwritten in place (no tail of the first)
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0);
}

TEST(AtomicFileTest, ErrorsNameThePath) {
  testing_util::TempDir dir;
  const std::string path = dir.path() + "/no-such-dir/state.json";
  absl::Status s = WriteFileAtomic(path, "x");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find(path + ".tmp"), std::string::npos) << s;
}

}  // namespace
}  // namespace tidal
