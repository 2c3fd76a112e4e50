#include "rollout/batch_scheduler.h"

#include <algorithm>
#include <stdexcept>

namespace tidal::rollout {

Scheduler::Scheduler(SchedulerConfig config, BlockManager* blocks)
    : config_(config), blocks_(blocks) {
  if (config_.max_batch_tokens < 1 || config_.max_seqs < 1 || config_.max_prefill_chunk < 0) {
    throw std::invalid_argument("Scheduler: max_batch_tokens and max_seqs must be >= 1, max_prefill_chunk >= 0");
  }
}

void Scheduler::Add(Sequence* seq) {
  seq->state = Sequence::State::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::Preempt(Sequence* seq) {
  blocks_->Free(*seq);
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  seq->state = Sequence::State::kWaiting;
  ++seq->num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(seq);
}

int64_t Scheduler::ChunkSize(int64_t remaining, int64_t budget) const {
  int64_t n = std::min(remaining, budget);
  if (config_.max_prefill_chunk > 0 && remaining > 1) n = std::min(n, config_.max_prefill_chunk);
  return n;
}

bool Scheduler::ScheduleRunning(Sequence* seq, int64_t& budget, ScheduledBatch& batch) {
  const int64_t n = ChunkSize(seq->NumTokens() - seq->num_computed_tokens, budget);
  while (!blocks_->CanAppend(*seq, n)) {
    // Victim: the last running sequence not scheduled in this step (possibly seq itself).
    auto victim = std::find_if(running_.rbegin(), running_.rend(), [&](Sequence* s) {
      return s->last_scheduled_step != step_;
    });
    Sequence* v = *victim;  // seq is running and unscheduled, so one always exists
    Preempt(v);
    ++batch.num_preempted;
    if (v == seq) return false;
  }
  blocks_->Append(*seq, n);
  seq->last_scheduled_step = step_;
  batch.seqs.push_back({seq, n});
  batch.num_tokens += n;
  budget -= n;
  return true;
}

ScheduledBatch Scheduler::Schedule() {
  ScheduledBatch batch;
  batch.step = ++step_;
  int64_t budget = config_.max_batch_tokens;
  // Decodes first, then prefills still in progress. Snapshot: preemption edits running_.
  for (bool decode_pass : {true, false}) {
    std::vector<Sequence*> order(running_.begin(), running_.end());
    for (Sequence* seq : order) {
      if (budget == 0) break;
      if (seq->state != Sequence::State::kRunning || seq->last_scheduled_step == step_) continue;
      const bool is_decode = seq->NumTokens() - seq->num_computed_tokens == 1;
      if (is_decode != decode_pass) continue;
      ScheduleRunning(seq, budget, batch);
    }
  }
  if (batch.num_preempted > 0) return batch;
  while (!waiting_.empty() && budget > 0 && std::ssize(running_) < config_.max_seqs) {
    Sequence* seq = waiting_.front();
    std::vector<int32_t> matched = blocks_->MatchPrefix(*seq);
    const int64_t cached = std::ssize(matched) * blocks_->block_size();
    const int64_t n = ChunkSize(seq->NumTokens() - cached, budget);
    if (!blocks_->CanAdmit(matched, cached + n)) break;
    waiting_.pop_front();
    blocks_->Admit(*seq, matched);
    blocks_->Append(*seq, n);
    seq->state = Sequence::State::kRunning;
    seq->last_scheduled_step = step_;
    running_.push_back(seq);
    batch.seqs.push_back({seq, n});
    batch.num_tokens += n;
    budget -= n;
  }
  return batch;
}

void Scheduler::Commit(const ScheduledBatch& batch) {
  for (const ScheduledSeq& s : batch.seqs) s.seq->num_computed_tokens += s.num_new_tokens;
}

void Scheduler::Finish(Sequence* seq) {
  blocks_->Free(*seq);
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) {
    running_.erase(it);
  }
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) {
    waiting_.erase(it);
  }
  seq->state = Sequence::State::kFinished;
}

void Scheduler::PreemptAll() {
  while (!running_.empty()) {
    Sequence* seq = running_.back();
    blocks_->Free(*seq);
    running_.pop_back();
    seq->state = Sequence::State::kWaiting;
    waiting_.push_front(seq);
  }
}

}  // namespace tidal::rollout
