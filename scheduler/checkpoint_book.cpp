#include "scheduler/checkpoint_book.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/remove_tree.h"

namespace tidal::scheduler {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Why the checkpoint in `dir` (named step-`step`) cannot be resumed from; "" when it can. Its
// controller state must say the same step as its name, and its trainer manifest must exist
// (the trainer verifies every file's checksum when it loads).
std::string Unusable(const fs::path& dir, int64_t step) {
  std::ifstream in(dir / "controller_state.json");
  json st = json::parse(in, nullptr, false);
  const std::string file = (dir / "controller_state.json").string();
  if (st.is_discarded() || !st.is_object()) return file + " is not a JSON object";
  for (const char* key : {"step", "version", "prompts_created"}) {
    if (!st.contains(key) || !st[key].is_number_integer()) return absl::StrCat(file, " lacks integer \"", key, "\"");
  }
  if (st["step"].get<int64_t>() != step) {
    return absl::StrCat(file, " says step ", st["step"].get<int64_t>(), " but the directory is step-", step);
  }
  if (st["prompts_created"].get<int64_t>() < 0) return file + ": negative prompts_created";
  std::ifstream m(dir / "manifest.json");
  json manifest = json::parse(m, nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object() || !manifest.contains("files")) {
    return (dir / "manifest.json").string() + " is missing or not a manifest";
  }
  return "";
}

}  // namespace

absl::StatusOr<std::optional<ResumePoint>> FindResumePoint(const std::string& ckpt_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) != 0 || n.find_first_not_of("0123456789", 5) != std::string::npos || n.size() == 5) {
      continue;  // step-N.partial and other names are never resumed from
    }
    if (!fs::exists(e.path() / "controller_state.json")) continue;
    found.emplace_back(std::atoll(n.c_str() + 5), e.path());
  }
  // Newest first; a damaged or inconsistent checkpoint is skipped with a warning.
  std::sort(found.rbegin(), found.rend());
  for (const auto& [step, dir] : found) {
    if (std::string why = Unusable(dir, step); !why.empty()) {
      TIDAL_LOG(WARN) << "checkpoint " << dir.string() << " is not usable (" << why << "); trying an older one";
      continue;
    }
    return ResumePoint{dir.string(), step};
  }
  return std::nullopt;
}

void WriteControllerState(const std::string& dir, int64_t step, int64_t version,
                          int64_t prompts_created) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  json st = {{"step", step}, {"version", version}, {"prompts_created", prompts_created}};
  std::ofstream(fs::path(dir) / "controller_state.json") << st.dump(2) << "\n";
}

void PruneCheckpoints(const std::string& ckpt_dir, int64_t keep) {
  std::vector<std::pair<int64_t, fs::path>> ckpts;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) == 0) ckpts.emplace_back(std::atoll(n.c_str() + 5), e.path());
  }
  std::sort(ckpts.begin(), ckpts.end());
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(0, keep)) < ckpts.size(); ++i) {
    absl::Status removed = RemoveTree(ckpts[i].second.string());
    if (!removed.ok()) TIDAL_LOG(WARN) << removed;
    TIDAL_LOG(INFO) << "removed old checkpoint " << ckpts[i].second.string();
  }
}

}  // namespace tidal::scheduler
