#include "core/hf_checkpoint.h"

#include "core/finite_check.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "core/safetensors.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kListed = 5;  // offenders named per kind before "... and N more"

std::string ListSome(const std::vector<std::string>& names) {
  std::vector<std::string> shown(names.begin(), names.begin() + std::min(names.size(), kListed));
  std::string s = absl::StrJoin(shown, ", ");
  if (names.size() > kListed) absl::StrAppend(&s, " ... and ", names.size() - kListed, " more");
  return s;
}

std::string ShapeString(at::IntArrayRef shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

const char* DtypeConfigName(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return "float32";
  }
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path.string(), ": write failed"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NamedTensors> ReadHfWeights(const std::string& dir) {
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";
  const fs::path single = root / "model.safetensors";
  NamedTensors out;
  if (!fs::exists(index_path)) {
    if (!fs::exists(single)) {
      return absl::NotFoundError(absl::StrCat(dir, ": neither model.safetensors nor "
                                                   "model.safetensors.index.json found"));
    }
    return LoadSafetensors(single.string());
  }
  std::ifstream in(index_path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  json index = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path.string(), ": not a JSON object with a \"weight_map\" object"));
  }
  std::map<std::string, std::vector<std::string>> by_shard;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": weight_map entry ", it.key(), " is not a file name"));
    }
    const std::string shard = it.value().get<std::string>();
    if (shard.find('/') != std::string::npos || shard == "..") {
      return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": shard name \"", shard,
                                                     "\" for ", it.key(), " leaves the directory"));
    }
    by_shard[shard].push_back(it.key());
  }
  for (const auto& [shard, names] : by_shard) {
    const std::string shard_path = (root / shard).string();
    TIDAL_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(shard_path));
    for (const std::string& name : names) {
      auto t = file->Tensor(name);
      if (!t.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(index_path.string(), " places ", name, " in ",
                                                       shard, ", but that shard has no such tensor"));
      }
      out.emplace(name, std::move(*t));
    }
  }
  return out;
}

void DropIgnoredWeights(const ModelConfig& config, NamedTensors& weights) {
  for (auto it = weights.begin(); it != weights.end();) {
    const bool drop = (config.tie_word_embeddings && it->first == "lm_head.weight") ||
                      absl::EndsWith(it->first, "rotary_emb.inv_freq");
    it = drop ? weights.erase(it) : std::next(it);
  }
}

absl::Status CheckWeights(const ModelConfig& config, const NamedTensors& weights,
                          const std::string& source) {
  std::vector<std::string> missing, bad_shape, bad_dtype, unexpected;
  std::set<std::string> expected;
  for (const ParamSpec& spec : ParamSpecs(config)) {
    expected.insert(spec.name);
    auto it = weights.find(spec.name);
    if (it == weights.end() || !it->second.defined()) {
      missing.push_back(spec.name);
      continue;
    }
    if (it->second.sizes().vec() != spec.shape) {
      bad_shape.push_back(absl::StrCat(spec.name, " (expected ", ShapeString(spec.shape), ", found ",
                                       ShapeString(it->second.sizes()), ")"));
    }
    if (!at::isFloatingType(it->second.scalar_type())) {
      bad_dtype.push_back(absl::StrCat(spec.name, " (", c10::toString(it->second.scalar_type()), ")"));
    }
  }
  for (const auto& [name, t] : weights) {
    if (!expected.count(name)) unexpected.push_back(name);
  }
  std::vector<std::string> problems;
  if (!missing.empty()) problems.push_back(absl::StrCat("missing tensors: ", ListSome(missing)));
  if (!bad_shape.empty()) problems.push_back(absl::StrCat("wrong shapes: ", ListSome(bad_shape)));
  if (!bad_dtype.empty()) problems.push_back(absl::StrCat("non-floating dtypes: ", ListSome(bad_dtype)));
  if (!unexpected.empty()) problems.push_back(absl::StrCat("unexpected tensors: ", ListSome(unexpected)));
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", absl::StrJoin(problems, "; ")));
}

absl::Status WriteHfCheckpoint(const std::string& dir, const ModelConfig& config,
                               const NamedTensors& weights) {
  TIDAL_RETURN_IF_ERROR(config.Validate());
  TIDAL_RETURN_IF_ERROR(CheckWeights(config, weights, "SaveHf"));
  TIDAL_RETURN_IF_ERROR(CheckAllFinite(weights, absl::StrCat("SaveHf ", dir)));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  ModelConfig written = config;
  written.torch_dtype = DtypeConfigName(weights.at("model.embed_tokens.weight").scalar_type());
  TIDAL_RETURN_IF_ERROR(
      SaveSafetensors((fs::path(dir) / "model.safetensors").string(), weights, {{"format", "pt"}}));
  // A stale index would shadow the single file we just wrote.
  fs::remove(fs::path(dir) / "model.safetensors.index.json", ec);
  return WriteText(fs::path(dir) / "config.json", written.ToHfJson());
}

bool HasHfTokenizer(const std::string& dir) { return fs::exists(fs::path(dir) / "tokenizer.json"); }

absl::StatusOr<Model> Model::LoadHf(const std::string& dir, at::ScalarType dtype) {
  TIDAL_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromHfDir(dir));
  TIDAL_ASSIGN_OR_RETURN(NamedTensors weights, ReadHfWeights(dir));
  DropIgnoredWeights(config, weights);
  TIDAL_RETURN_IF_ERROR(CheckWeights(config, weights, dir));
  for (auto& [name, t] : weights) {
    if (t.scalar_type() != dtype) t = t.to(dtype);
  }
  config.torch_dtype = DtypeConfigName(dtype);
  return Model(std::move(config), std::move(weights));
}

absl::Status Model::SaveHf(const std::string& dir) const {
  return WriteHfCheckpoint(dir, config_, weights_);
}

}  // namespace tidal
