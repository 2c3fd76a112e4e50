// Continuous batching: which sequences run in the next step, and how many tokens each.
//
// Contract:
// - Single-threaded, on the engine's thread. The Engine owns the Sequences; the Scheduler keeps
//   raw pointers in two queues (waiting, running) and calls the BlockManager.
// - Per step, Schedule() fills a token budget (max_batch_tokens) under a sequence cap
//   (max_seqs): running sequences first (decodes before unfinished prefills, so a long prompt
//   does not stall them), then waiting ones in FIFO order (stopping at the first that does not
//   fit: no overtaking, no starvation). A prompt longer than what is left of the budget (or
//   than max_prefill_chunk) is cut into chunks over several steps (chunked prefill).
// - A scheduled sequence computes tokens [num_computed_tokens, num_computed_tokens + n). When
//   that reaches NumTokens(), the step yields its next-token logits (ScheduledSeq::Samples).
// - When a running sequence cannot get a block, the lowest-priority running sequence not yet
//   scheduled in this step (the most recently admitted) is preempted by recompute: its blocks
//   are freed (they stay in the prefix cache) and it goes to the FRONT of the waiting queue
//   with all its tokens kept; on readmission it re-prefills prompt + generated tokens. A step
//   that preempted admits no waiting sequence.
// - After running the batch, Commit(batch) advances num_computed_tokens; the Engine then
//   appends sampled tokens and calls Finish for the sequences that ended.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "rollout/block_manager.h"
#include "rollout/sequence.h"

namespace tidal::rollout {

struct SchedulerConfig {
  int64_t max_batch_tokens = 2048;
  int64_t max_seqs = 64;
  // Most prompt tokens one sequence computes per step (0 = the whole budget). A cap lets
  // waiting prompts and decodes share steps with a long prefill instead of queueing behind it.
  int64_t max_prefill_chunk = 0;
};

struct ScheduledSeq {
  Sequence* seq;
  int64_t num_new_tokens;
  // Whether this step ends at the sequence's last token, so its logits are sampled. Valid
  // between Schedule() and Commit().
  bool Samples() const { return seq->num_computed_tokens + num_new_tokens == seq->NumTokens(); }
};

struct ScheduledBatch {
  int64_t step = 0;
  std::vector<ScheduledSeq> seqs;
  int64_t num_tokens = 0;
  int64_t num_preempted = 0;
  bool empty() const { return seqs.empty(); }
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig config, BlockManager* blocks);

  void Add(Sequence* seq);  // to the back of the waiting queue
  ScheduledBatch Schedule();
  void Commit(const ScheduledBatch& batch);
  // Removes seq from whichever queue holds it and frees its blocks.
  void Finish(Sequence* seq);
  // Every running sequence back to the front of the waiting queue (order kept), blocks freed.
  // Used before a weight update and when the KV cache is released.
  void PreemptAll();

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const std::deque<Sequence*>& running() const { return running_; }
  int64_t num_preemptions() const { return num_preemptions_; }

 private:
  void Preempt(Sequence* seq);
  int64_t ChunkSize(int64_t remaining, int64_t budget) const;
  // Schedules `seq` (running) for up to `budget` tokens, preempting others for blocks. Returns
  // false when seq itself had to be preempted.
  bool ScheduleRunning(Sequence* seq, int64_t& budget, ScheduledBatch& batch);

  SchedulerConfig config_;
  BlockManager* blocks_;
  std::deque<Sequence*> waiting_;
  std::deque<Sequence*> running_;  // admission order = priority order
  int64_t step_ = 0;
  int64_t num_preemptions_ = 0;
};

}  // namespace tidal::rollout
