#include "core/safetensors.h"
#include "tests/core/temp_dir.h"

#include <gtest/gtest.h>
#include <ftw.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace tidal {
namespace {

namespace fs = std::filesystem;

// std::filesystem::remove_all resolves to a copy inside libtorch.so that calls a libstdc++
// symbol missing from Debian 12's GCC 12 runtime (null call -> SIGSEGV); walk the tree ourselves.
using testing_util::RemoveTree;


class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tidal_st_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { RemoveTree(dir_.string()); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  static void WriteBytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  // A buffer with a hand-written header, to build lying files.
  static std::string WithHeader(const std::string& json, const std::string& data) {
    std::string out(8, '\0');
    uint64_t n = json.size();
    std::memcpy(out.data(), &n, 8);
    return out + json + data;
  }
  fs::path dir_;
};

NamedTensors Sample() {
  return {{"a.f32", at::arange(12, at::kFloat).reshape({3, 4})},
          {"b.bf16", at::randn({5}).to(at::kBFloat16)},
          {"c.f16", at::randn({2, 1}).to(at::kHalf)},
          {"d.i64", at::tensor({-1, 2, 3}, at::kLong)},
          {"e.i32", at::tensor({7}, at::kInt)},
          {"f.u8", at::tensor({1, 2, 255}, at::kByte)},
          {"g.bool", at::tensor({1, 0, 1}, at::kByte).to(at::kBool)},
          {"h.scalar", at::tensor(3.5, at::kDouble)},
          {"i.empty", at::empty({0, 4}, at::kFloat)}};
}

void ExpectSame(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_EQ(t.scalar_type(), b.at(name).scalar_type()) << name;
    EXPECT_EQ(t.sizes(), b.at(name).sizes()) << name;
    EXPECT_TRUE(at::equal(t, b.at(name))) << name;
  }
}

TEST_F(SafetensorsTest, FileRoundTripAllDtypes) {
  NamedTensors in = Sample();
  ASSERT_TRUE(SaveSafetensors(Path("x.safetensors"), in, {{"format", "pt"}}).ok());
  auto file = SafetensorsFile::Open(Path("x.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->Find("b.bf16")->dtype_name, "BF16");
  auto all = (*file)->All();
  ASSERT_TRUE(all.ok());
  ExpectSame(in, *all);
  EXPECT_EQ((*file)->Tensor("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, TensorsOutliveTheFileObjectAndWritesStayPrivate) {
  ASSERT_TRUE(SaveSafetensors(Path("x.safetensors"), Sample()).ok());
  at::Tensor a;
  {
    auto loaded = LoadSafetensors(Path("x.safetensors"));
    ASSERT_TRUE(loaded.ok());
    a = loaded->at("a.f32");
  }
  EXPECT_EQ(a[2][3].item<float>(), 11.0f);  // mapping still alive
  a.add_(1);                                 // copy-on-write: the file keeps its bytes
  EXPECT_EQ(LoadSafetensors(Path("x.safetensors"))->at("a.f32")[0][0].item<float>(), 0.0f);
}

TEST_F(SafetensorsTest, InMemoryMatchesFileBytes) {
  NamedTensors in = Sample();
  auto bytes = EncodeSafetensors(in, {{"k", "v"}});
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(SaveSafetensors(Path("x.safetensors"), in, {{"k", "v"}}).ok());
  std::ifstream f(Path("x.safetensors"), std::ios::binary);
  std::string file_bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(*bytes, file_bytes);
  SafetensorsMetadata meta;
  auto out = DecodeSafetensors(*bytes, "buf", &meta);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSame(in, *out);
  EXPECT_EQ(meta.at("k"), "v");
  // Header padded to 8 bytes and every tensor aligned to its itemsize.
  uint64_t n = 0;
  std::memcpy(&n, bytes->data(), 8);
  EXPECT_EQ(n % 8, 0u);
  auto header = ParseSafetensorsHeader(*bytes, bytes->size(), "buf");
  ASSERT_TRUE(header.ok());
  for (const auto& e : header->entries) EXPECT_EQ(e.begin % c10::elementSize(e.dtype), 0u) << e.name;
}

TEST_F(SafetensorsTest, NonContiguousAndEmptyInputs) {
  at::Tensor t = at::arange(6, at::kFloat).reshape({2, 3}).t();
  auto out = DecodeSafetensors(*EncodeSafetensors({{"t", t}}));
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(at::equal(out->at("t"), t));
  auto empty = DecodeSafetensors(*EncodeSafetensors({}));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
  EXPECT_FALSE(EncodeSafetensors({{"c", at::zeros({2}, at::kComplexFloat)}}).ok());
}

TEST_F(SafetensorsTest, ReadsFilesWrittenByPythonSafetensors) {
  // Reference bytes from the `safetensors` package: {"w": F32 [2] = [1, 2]}, padded header.
  const std::string json = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  float data[2] = {1.0f, 2.0f};
  auto out = DecodeSafetensors(WithHeader(padded, std::string(reinterpret_cast<char*>(data), 8)));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(at::equal(out->at("w"), at::tensor({1.0f, 2.0f})));
}

TEST_F(SafetensorsTest, TruncatedFilesAreErrorsNamingFileAndTensor) {
  auto bytes = *EncodeSafetensors({{"big.weight", at::ones({64}, at::kFloat)}});
  for (size_t keep : {size_t{0}, size_t{5}, size_t{20}, bytes.size() - 1}) {
    WriteBytes(Path("t.safetensors"), bytes.substr(0, keep));
    auto s = SafetensorsFile::Open(Path("t.safetensors")).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << keep << " " << s;
    EXPECT_NE(s.message().find("t.safetensors"), std::string::npos) << s;
    EXPECT_NE(s.message().find("truncated"), std::string::npos) << s;
  }
  WriteBytes(Path("t.safetensors"), bytes.substr(0, bytes.size() - 1));
  auto s = SafetensorsFile::Open(Path("t.safetensors")).status();
  EXPECT_NE(s.message().find("big.weight"), std::string::npos) << s;
  EXPECT_EQ(SafetensorsFile::Open(Path("missing.safetensors")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, LyingHeadersAreErrors) {
  const std::string data(16, '\0');
  struct Case {
    std::string header, expect;
  };
  const Case cases[] = {
      {R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "needs 12 bytes"},
      {R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", "past the 16 data bytes"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "reversed"},
      {R"({"w":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}})", "X9"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "negative"},
      {R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", "overflow"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", "data_offsets"},
      {R"({"w":{"shape":[2],"data_offsets":[0,8]}})", "dtype"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", "overlap"},
      {R"({"__metadata__":{"k":1}})", "__metadata__"},
      {R"([1,2])", "not a JSON object"},
      {R"({"w":{"dtype":"F32")", "not a JSON object"},
  };
  for (const Case& c : cases) {
    auto s = DecodeSafetensors(WithHeader(c.header, data), "lie.safetensors").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.header;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << c.header << " -> " << s;
    EXPECT_NE(s.message().find("lie.safetensors"), std::string::npos) << s;
  }
  // Header length larger than the file, and absurdly large.
  std::string bytes = WithHeader("{}", "");
  uint64_t n = 1000;
  std::memcpy(bytes.data(), &n, 8);
  EXPECT_NE(DecodeSafetensors(bytes).status().message().find("truncated"), std::string::npos);
  n = ~0ull;
  std::memcpy(bytes.data(), &n, 8);
  EXPECT_FALSE(DecodeSafetensors(bytes).ok());
}

TEST_F(SafetensorsTest, UnalignedDataIsCopiedNotMisread) {
  // One byte of U8 then an F32: legal in the format, the float starts misaligned.
  const std::string json =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}})";
  std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  float v = 2.5f;
  std::string data = std::string(1, '\x07') + std::string(reinterpret_cast<char*>(&v), 4);
  WriteBytes(Path("u.safetensors"), WithHeader(padded, data));
  auto t = LoadSafetensors(Path("u.safetensors"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->at("b").item<float>(), 2.5f);
  EXPECT_EQ(t->at("a").item<uint8_t>(), 7);
}

}  // namespace
}  // namespace tidal
