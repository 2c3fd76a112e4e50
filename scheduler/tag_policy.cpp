#include "scheduler/tag_policy.h"

namespace tidal::scheduler {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

absl::StatusOr<TagPolicy> ParseTagPolicy(std::string_view name) {
  if (name == "static") return TagPolicy{StaticPolicy{}};
  if (name == "colocated") return TagPolicy{ColocatedPolicy{}};
  if (name == "elastic") return TagPolicy{ElasticPolicy{}};
  return absl::InvalidArgumentError(absl::StrFormat(
      "pool.policy: expected one of static, colocated, elastic; found '%s'", name));
}

TagPolicy TagPolicyFor(PoolPolicy policy) {
  switch (policy) {
    case PoolPolicy::kStatic: return StaticPolicy{};
    case PoolPolicy::kColocated: return ColocatedPolicy{};
    case PoolPolicy::kElastic: return ElasticPolicy{};
  }
  return StaticPolicy{};
}

std::string TagPolicyName(const TagPolicy& policy) {
  return std::visit(Overloaded{[](const StaticPolicy&) { return std::string("static"); },
                               [](const ColocatedPolicy&) { return std::string("colocated"); },
                               [](const ElasticPolicy&) { return std::string("elastic"); }},
                    policy);
}

std::vector<Tag> DecideTags(const TagPolicy& policy, const PolicyInputs& in) {
  std::vector<Tag> out;
  out.reserve(in.devices.size());
  const bool train_phase = in.train_running || in.batch_ready;
  std::visit(Overloaded{
                 [&](const StaticPolicy&) {
                   for (const auto& d : in.devices) out.push_back(d.home);
                 },
                 [&](const ColocatedPolicy&) {
                   // Between warm-up steps nothing needs the engines: switching to rollout and
                   // back would cost every SFT step two memory-phase switches on a GPU.
                   bool rollout_work = in.dispatchable_groups > 0;
                   for (const auto& d : in.devices) rollout_work |= d.rollout_groups > 0;
                   const bool train = train_phase || (in.warmup && !rollout_work);
                   for (size_t i = 0; i < in.devices.size(); ++i) out.push_back(train ? Tag::kTrain : Tag::kRollout);
                 },
                 [&](const ElasticPolicy&) {
                   for (const auto& d : in.devices) {
                     if (d.home == Tag::kRollout) {
                       out.push_back(Tag::kRollout);
                     } else if (train_phase) {
                       out.push_back(Tag::kTrain);
                     } else if (in.dispatchable_groups > 0 || d.rollout_groups > 0) {
                       out.push_back(Tag::kRollout);
                     } else {
                       out.push_back(Tag::kTrain);
                     }
                   }
                 }},
             policy);
  return out;
}

const char* MoveReason(const TagPolicy& policy, Tag to) {
  if (std::holds_alternative<ColocatedPolicy>(policy)) return "gang";
  return to == Tag::kRollout ? "lend" : "recall";
}

std::vector<int> TrainGroup(const TagPolicy& policy, const std::vector<Tag>& home_tags) {
  std::vector<int> group;
  const bool all = std::holds_alternative<ColocatedPolicy>(policy);
  for (size_t i = 0; i < home_tags.size(); ++i) {
    if (all || home_tags[i] == Tag::kTrain) group.push_back(static_cast<int>(i));
  }
  return group;
}

bool HostsEngine(const TagPolicy& policy, Tag home) {
  return home == Tag::kRollout || !std::holds_alternative<StaticPolicy>(policy);
}

}  // namespace tidal::scheduler
