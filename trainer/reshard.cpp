#include "trainer/reshard.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainer/checkpoint.h"

namespace tidal::trainer {

TrainState GatherTrainState(ShardedModel& m, bool all_ranks) {
  TrainState out;
  Communicator& comm = m.comm();
  const bool keep = all_ranks || comm.rank() == 0;
  // FullWeights is collective on every rank; the flats below are too.
  NamedTensors weights = m.FullWeights(all_ranks);
  for (auto& [name, shard] : m.StateTensors()) {
    at::Tensor flat = at::empty({shard.numel() * comm.world_size()}, shard.options());
    absl::Status st = comm.AllGather(shard.contiguous(), flat);
    TORCH_CHECK(st.ok(), "GatherTrainState ", name, ": ", st.ToString());
    if (keep) out.flats.emplace_back(name, flat.to(at::kCPU, at::kFloat).clone());
  }
  if (!keep) return TrainState{};
  out.config = m.config();
  out.weights = std::move(weights);
  out.optimizer_steps = m.optimizer_steps();
  out.adam_steps = m.adam_steps();
  out.source_world = comm.world_size();
  return out;
}

absl::Status ScatterTrainState(const TrainState& state, ShardedModel& m) {
  if (state.empty()) return absl::InvalidArgumentError("ScatterTrainState: empty state (gathered on another rank?)");
  const bool has_ref = std::any_of(state.flats.begin(), state.flats.end(),
                                   [](const auto& f) { return absl::EndsWith(f.first, ".reference"); });
  if (has_ref && !m.has_reference()) m.SnapshotReference();  // allocates the reference shards
  std::map<std::string, const at::Tensor*> by_name;
  for (const auto& [name, t] : state.flats) by_name[name] = &t;
  const int64_t rank = m.comm().rank();
  for (auto& [name, shard] : m.StateTensors()) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      if (absl::EndsWith(name, ".reference")) continue;  // the state had no reference: keep m's
      return absl::InvalidArgumentError(absl::StrCat("ScatterTrainState: state lacks ", name));
    }
    const at::Tensor& flat = *it->second;
    const int64_t s = shard.numel(), lo = rank * s;
    // Elements past either padded length are padding, i.e. zero in both layouts.
    at::Tensor part = at::zeros({s}, at::kFloat);
    const int64_t n = std::max<int64_t>(0, std::min(s, flat.numel() - lo));
    if (n > 0) part.narrow(0, 0, n).copy_(flat.narrow(0, lo, n));
    shard.copy_(part.to(shard.device()));
  }
  m.set_optimizer_steps(state.optimizer_steps);
  m.set_adam_steps(state.adam_steps);
  return absl::OkStatus();
}

absl::StatusOr<TrainState> TrainStateFromCheckpoint(const std::string& dir) {
  TIDAL_ASSIGN_OR_RETURN(ShardedCheckpointContents c, ReadShardedCheckpoint(dir));
  nlohmann::json meta = nlohmann::json::parse(c.meta, nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.contains("step") || !meta.contains("model")) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": meta.json is not trainer state"));
  }
  TrainState out;
  TIDAL_ASSIGN_OR_RETURN(out.config, ModelConfig::FromHfJson(meta["model"].dump(), dir + "/meta.json"));
  out.optimizer_steps = meta["step"].get<int64_t>();
  out.adam_steps = meta.value("adam_step", out.optimizer_steps);
  out.lr = meta.value("lr", 0.0);
  out.source_world = c.world_size;
  for (size_t i = 0; i < c.ranks[0].size(); ++i) {
    const std::string& name = c.ranks[0][i].first;
    if (name == "rng.cpu") continue;
    std::vector<at::Tensor> parts;
    for (int r = 0; r < c.world_size; ++r) {
      const NamedTensorList& rank = c.ranks[r];
      if (i >= rank.size() || rank[i].first != name) {
        return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": rank ", r, " does not hold ", name,
                                                " where rank 0 does"));
      }
      parts.push_back(rank[i].second.to(at::kFloat));
    }
    out.flats.emplace_back(name, at::cat(parts));
  }
  return out;
}

std::string CommunicatorCache::GroupName(const std::string& prefix, const std::vector<int>& sorted_members) {
  return absl::StrCat(prefix, ".m", absl::StrJoin(sorted_members, "_"));
}

absl::StatusOr<Communicator*> CommunicatorCache::Get(const std::string& group, std::vector<int> members, int self,
                                                     const std::string& bootstrap, bool* created) {
  if (created != nullptr) *created = false;
  std::sort(members.begin(), members.end());
  if (std::adjacent_find(members.begin(), members.end()) != members.end()) {
    return absl::InvalidArgumentError(absl::StrCat("train group [", absl::StrJoin(members, ","), "] repeats a device"));
  }
  auto pos = std::find(members.begin(), members.end(), self);
  if (pos == members.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("device ", self, " is not in train group [", absl::StrJoin(members, ","), "]"));
  }
  auto it = cache_.find(group);
  if (it != cache_.end()) {
    if (it->second.members != members) {
      return absl::InvalidArgumentError(absl::StrCat("communicator '", group, "' has members [",
                                                     absl::StrJoin(it->second.members, ","), "], not [",
                                                     absl::StrJoin(members, ","), "]"));
    }
    return it->second.comm.get();
  }
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                         factory_(group, members, static_cast<int>(pos - members.begin()), bootstrap));
  Communicator* raw = comm.get();
  cache_.emplace(group, Entry{members, std::move(comm)});
  if (created != nullptr) *created = true;
  return raw;
}

}  // namespace tidal::trainer
