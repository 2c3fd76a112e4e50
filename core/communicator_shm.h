// CPU Communicator between processes (or threads) on one machine, over POSIX shared memory.
//
// Contract:
// - Every rank calls Create with the same `group` name, world_size and sizes; rank 0 creates the
//   segment "/tidal-<group>", the others attach (waiting up to `timeout` for it). Once all ranks
//   have attached rank 0 unlinks the name, so a crash later leaks nothing; the name may then be
//   reused. Group names must be unique among groups that start at the same time (callers put a
//   run id / nonce in them): a stale segment of a crashed run with the same name could be joined.
// - Ranks may be separate processes or threads of one process (each thread its own object).
// - Data moves through per-rank staging slots of `slot_bytes`; larger tensors go in chunks, two
//   barriers per chunk. Send/Recv use one `p2p_bytes` mailbox per ordered rank pair.
// - Waits spin briefly, then sleep on a futex in the segment. A wait longer than `timeout` marks
//   the whole group failed (peers stop at their next wait) and returns kDeadlineExceeded naming
//   the operation and rank. A dead peer therefore turns into an error, not a hang.
// - Reductions run in rank order on every rank, so AllReduce results are bitwise identical across
//   ranks; bf16/fp16 are accumulated in fp32.
// - AllGatherAsync is synchronous here (no progress thread): prefetch gives no overlap on CPU.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/communicator.h"

namespace tidal {

struct ShmCommunicatorOptions {
  std::string group;  // [A-Za-z0-9_.-]+, unique per concurrently running group
  int rank = 0;
  int world_size = 1;
  size_t slot_bytes = size_t{8} << 20;
  size_t p2p_bytes = size_t{1} << 20;
  absl::Duration timeout = absl::Seconds(300);
};

class ShmCommunicator final : public Communicator {
 public:
  static absl::StatusOr<std::unique_ptr<ShmCommunicator>> Create(const ShmCommunicatorOptions& options);
  ~ShmCommunicator() override;

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  std::string backend() const override { return "shm"; }

  absl::Status AllGather(const at::Tensor& input, const at::Tensor& output) override;
  absl::Status ReduceScatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op) override;
  absl::Status AllReduce(const at::Tensor& tensor, ReduceOp op) override;
  absl::Status Broadcast(const at::Tensor& tensor, int root) override;
  absl::Status Send(const at::Tensor& tensor, int peer) override;
  absl::Status Recv(const at::Tensor& tensor, int peer) override;
  absl::Status Barrier() override;

  struct Segment;  // layout of the shared segment; opaque outside communicator_shm.cpp

 private:
  ShmCommunicator(ShmCommunicatorOptions options, void* base, size_t bytes);
  absl::Status Fail(absl::Status status);  // marks the group failed, returns status
  char* Slot(int rank) const;
  absl::Status CheckUsable(const char* op) const;

  ShmCommunicatorOptions options_;
  void* base_ = nullptr;
  size_t bytes_ = 0;
  Segment* seg_ = nullptr;
  absl::Status failed_;  // first error seen by this rank
};

}  // namespace tidal
