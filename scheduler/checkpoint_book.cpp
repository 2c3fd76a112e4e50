#include "scheduler/checkpoint_book.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/atomic_file.h"
#include "core/hash.h"
#include "core/logging.h"
#include "core/remove_tree.h"

namespace tidal::scheduler {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kStateFile[] = "controller_state.json";

std::string ReadText(const fs::path& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  *ok = static_cast<bool>(in);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The step-N directories in `ckpt_dir` (N parsed from the name), unsorted. step-N.partial and
// other names are not checkpoints.
std::vector<std::pair<int64_t, fs::path>> StepDirs(const std::string& ckpt_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) != 0 || n.size() == 5 || n.find_first_not_of("0123456789", 5) != std::string::npos) {
      continue;
    }
    found.emplace_back(std::atoll(n.c_str() + 5), e.path());
  }
  return found;
}

// The state of the checkpoint in `dir` (named step-`step`), or why it cannot be resumed from in
// `why`. The manifest must list the state's exact bytes, and the state must say the same step as
// the directory's name.
std::optional<ControllerState> ReadState(const fs::path& dir, int64_t step, std::string* why) {
  const std::string file = (dir / kStateFile).string();
  const std::string manifest_file = (dir / "manifest.json").string();
  bool ok = false;
  json manifest = json::parse(ReadText(manifest_file, &ok), nullptr, false);
  if (!ok || manifest.is_discarded() || !manifest.is_object() || !manifest.contains("files") ||
      !manifest["files"].is_object()) {
    *why = manifest_file + " is missing or not a manifest";
    return std::nullopt;
  }
  const std::string text = ReadText(file, &ok);
  const json& entry = manifest["files"].contains(kStateFile) ? manifest["files"][kStateFile] : json();
  if (!entry.is_object() || !entry.contains("bytes") || !entry.contains("crc32c") ||
      !entry["bytes"].is_number_unsigned() || !entry["crc32c"].is_number_unsigned()) {
    *why = absl::StrCat(manifest_file, " does not list ", kStateFile, " with its bytes and crc32c");
    return std::nullopt;
  }
  if (!ok || text.size() != entry["bytes"].get<uint64_t>() ||
      Crc32c(text.data(), text.size()) != entry["crc32c"].get<uint32_t>()) {
    *why = absl::StrCat(file, " does not match its size and CRC-32C in ", manifest_file, " (edited or damaged)");
    return std::nullopt;
  }
  json st = json::parse(text, nullptr, false);
  if (st.is_discarded() || !st.is_object()) {
    *why = file + " is not a JSON object";
    return std::nullopt;
  }
  for (const char* key : {"step", "version", "prompts_created"}) {
    if (!st.contains(key) || !st[key].is_number_integer()) {
      *why = absl::StrCat(file, " lacks integer \"", key, "\"");
      return std::nullopt;
    }
  }
  if (!st.contains("run_id") || !st["run_id"].is_string()) {
    *why = file + " lacks string \"run_id\"";
    return std::nullopt;
  }
  ControllerState out{st["step"].get<int64_t>(), st["version"].get<int64_t>(), st["prompts_created"].get<int64_t>(),
                      st["run_id"].get<std::string>()};
  if (out.step != step) {
    *why = absl::StrCat(file, " says step ", out.step, " but the directory is step-", step);
    return std::nullopt;
  }
  if (out.step < 0 || out.version < 0 || out.prompts_created < 0) {
    *why = file + ": negative step, version or prompts_created";
    return std::nullopt;
  }
  return out;
}

}  // namespace

std::string NewRunId() {
  std::random_device rd;
  const uint64_t id = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return absl::StrFormat("%016x", id);
}

absl::StatusOr<std::optional<ResumePoint>> FindResumePoint(const std::string& ckpt_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  for (auto& [step, dir] : StepDirs(ckpt_dir)) {
    if (fs::exists(dir / kStateFile)) found.emplace_back(step, dir);  // else: never completed
  }
  // Newest first; a damaged or inconsistent checkpoint is skipped with a warning.
  std::sort(found.rbegin(), found.rend());
  for (const auto& [step, dir] : found) {
    std::string why;
    std::optional<ControllerState> st = ReadState(dir, step, &why);
    if (!st) {
      TIDAL_LOG(WARN) << "checkpoint " << dir.string() << " is not usable (" << why << "); trying an older one";
      continue;
    }
    return ResumePoint{dir.string(), step, st->run_id};
  }
  return std::nullopt;
}

absl::Status WriteControllerState(const std::string& dir, const ControllerState& state) {
  const json st = {{"step", state.step},
                   {"version", state.version},
                   {"prompts_created", state.prompts_created},
                   {"run_id", state.run_id}};
  const std::string text = st.dump(2) + "\n";
  const std::string manifest_file = (fs::path(dir) / "manifest.json").string();
  bool ok = false;
  json manifest = json::parse(ReadText(manifest_file, &ok), nullptr, false);
  if (!ok || manifest.is_discarded() || !manifest.is_object() || !manifest.contains("files") ||
      !manifest["files"].is_object()) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": ", manifest_file,
                                            " is missing or not a manifest; the controller state is not written"));
  }
  // The state first, then its entry: a crash in between leaves a state the manifest does not
  // vouch for, which a resume skips (falling back to the previous checkpoint).
  TIDAL_RETURN_IF_ERROR(WriteFileAtomic((fs::path(dir) / kStateFile).string(), text));
  manifest["files"][kStateFile] = {{"bytes", text.size()}, {"crc32c", Crc32c(text.data(), text.size())}};
  return WriteFileAtomic(manifest_file, manifest.dump(2));
}

void PruneCheckpoints(const std::string& ckpt_dir, int64_t keep, const std::string& run_id) {
  std::vector<std::pair<int64_t, fs::path>> ours;
  for (auto& [step, dir] : StepDirs(ckpt_dir)) {
    std::string why;
    std::optional<ControllerState> st = ReadState(dir, step, &why);
    if (st && st->run_id == run_id) ours.emplace_back(step, dir);
  }
  std::sort(ours.begin(), ours.end());
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(0, keep)) < ours.size(); ++i) {
    absl::Status removed = RemoveTree(ours[i].second.string());
    if (!removed.ok()) TIDAL_LOG(WARN) << removed;
    TIDAL_LOG(INFO) << "removed old checkpoint " << ours[i].second.string();
  }
}

absl::Status CheckFreshCheckpointDir(const std::string& ckpt_dir, bool overwrite) {
  std::vector<std::pair<int64_t, fs::path>> found = StepDirs(ckpt_dir);
  if (found.empty()) return absl::OkStatus();
  if (!overwrite) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint.dir '", ckpt_dir, "' already holds checkpoints (", found.front().second.filename().string(),
        ", ...) of another run; continue that run with `tidal run --resume RUN_DIR`, set another checkpoint.dir, "
        "or pass --overwrite to delete them"));
  }
  for (const auto& [step, dir] : found) {
    TIDAL_RETURN_IF_ERROR(RemoveTree(dir.string()));
    TIDAL_LOG(INFO) << "--overwrite: removed " << dir.string();
  }
  return absl::OkStatus();
}

}  // namespace tidal::scheduler
