#include "scheduler/broadcast_control.h"

#include <algorithm>
#include <string>

#include "core/logging.h"

namespace tidal::scheduler {
namespace {

std::string Name(int device) { return std::to_string(device); }

}  // namespace

BroadcastControl::BroadcastControl(std::vector<int> train_group, std::string group_base)
    : train_group_(std::move(train_group)), group_base_(std::move(group_base)),
      members_(Name(train_group_.empty() ? -1 : train_group_.front())) {}

std::vector<int> BroadcastControl::Receivers() const {
  std::vector<int> out;
  const auto& ranks = members_.ranks();
  for (size_t r = 1; r < ranks.size(); ++r) out.push_back(std::stoi(ranks[r]));
  return out;
}

bool BroadcastControl::IsReceiver(int device) const {
  auto r = members_.RankOf(Name(device));
  return r.has_value() && *r > 0;
}

void BroadcastControl::Owe(int64_t version) {
  if (version < 0) return;
  resend_ = std::max(resend_.value_or(version), version);
}

BroadcastControl::Outbox BroadcastControl::EpochChanged() {
  Outbox out;
  for (int d : train_group_) out.epochs.emplace_back(d, CurrentEpoch());
  return out;
}

BroadcastControl::Outbox BroadcastControl::SetTrainGroup(std::vector<int> train_group) {
  train_group_ = std::move(train_group);
  bool changed = false;
  if (!train_group_.empty()) changed |= members_.SetPublisher(Name(train_group_.front()));
  for (int d : train_group_) changed |= members_.Leave(Name(d));  // trainers install their own copy
  // Every member of the old or new train group rebuilds its trainer and its transport
  // (TrainGroupJoin), so the publisher's group is gone even when the membership is not.
  if (!changed) members_.Renew();
  // Every train rank learns the epoch (a new rank 0 needs it before its first broadcast). Nothing
  // is owed: every receiver already holds the newest version.
  return EpochChanged();
}

BroadcastControl::Outbox BroadcastControl::ReceiverReady(int device, int64_t version) {
  if (std::find(train_group_.begin(), train_group_.end(), device) != train_group_.end()) return {};
  // A restarted worker rejoins: its old process's place in the group is gone.
  members_.Leave(Name(device));
  members_.Join(Name(device));
  Owe(version);  // a late joiner gets the current version
  return EpochChanged();
}

BroadcastControl::Outbox BroadcastControl::ReceiverGone(int device) {
  if (!members_.Leave(Name(device))) return {};
  return EpochChanged();
}

BroadcastControl::Outbox BroadcastControl::OnKey(int device, const WeightGroupKey& key) {
  if (members_.RankOf(Name(device)) != 0) {
    TIDAL_LOG(WARN) << "weight broadcast: key from device " << device << ", which is not the publisher; ignored";
    return {};
  }
  if (absl::Status s = members_.SetId(key.epoch, key.key_hex); !s.ok()) {
    TIDAL_LOG(WARN) << s << "; ignored";
    return {};
  }
  Outbox out;
  for (int d : Receivers()) {
    auto t = members_.Ticket(Name(d));
    if (!t.ok()) continue;  // cannot happen once the id is set; kept total
    out.joins.emplace_back(d, WeightGroupJoin{t->epoch, t->rank, t->world_size, t->nccl_id});
  }
  return out;
}

BroadcastControl::Outbox BroadcastControl::OnStarting(int device, const WeightBroadcastStarting& m) {
  if (members_.RankOf(Name(device)) != 0) return {};
  if (m.epoch != members_.epoch()) {
    TIDAL_LOG(WARN) << "weight broadcast of version " << m.version << " starts in epoch " << m.epoch
                    << ", the group is in epoch " << members_.epoch() << "; it will time out and be resent";
    return {};
  }
  if (resend_ && *resend_ <= m.version) resend_.reset();  // this broadcast carries it
  Outbox out;
  for (int d : Receivers()) out.incoming.emplace_back(d, WeightIncoming{m.epoch, m.version});
  return out;
}

BroadcastControl::Outbox BroadcastControl::OnDone(int device, const WeightBroadcastDone& m) {
  if (members_.RankOf(Name(device)) != 0) return {};
  if (m.ok) {
    ++versions_;
    bytes_ += m.bytes;
    return {};
  }
  ++failures_;
  // A refusal of the publisher's own (non-finite values, a missing tensor) would fail again.
  if (!m.group_dead) return {};
  Owe(m.version);
  if (m.epoch != members_.epoch()) return {};  // already replaced (a member left or joined)
  members_.Renew();
  return EpochChanged();
}

void BroadcastControl::OnRejected(int device, int64_t version) {
  if (IsReceiver(device)) Owe(version);
}

}  // namespace tidal::scheduler
