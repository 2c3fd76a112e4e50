// Collective and point-to-point communication among the ranks of one group (the train ranks'
// FSDP traffic; also a bootstrap channel). Two implementations:
//   - ShmCommunicator (core/communicator_shm.h): CPU tensors, processes (or threads) on one
//     machine, POSIX shared memory + futexes. Tests, CI and the CPU quickstart use it.
//   - NCCL (core/communicator_nccl.h): CUDA tensors, one GPU per rank, with a watchdog.
//
// Contract:
// - Every rank of the group calls the same collectives in the same order with matching sizes and
//   dtypes (as with MPI/NCCL). A rank that stops calling makes its peers fail after the
//   backend's timeout with kDeadlineExceeded; a failed group stays failed (every later call
//   returns the first error): rebuild the communicator, do not retry on it.
// - One thread drives a Communicator at a time (not thread-safe); distinct Communicators may be
//   driven from distinct threads, even in one process.
// - Tensors must be contiguous, on the backend's device, and are treated as flat arrays of
//   numel() elements. "output" tensors are written in place (at::Tensor is a handle).
// - Stream semantics (NCCL): a call is ordered after the work already queued on the caller's
//   current CUDA stream, and work queued on that stream afterwards sees its result. The host does
//   not block. CPU backend: the call returns when the result is in place.
// - Errors: absl::Status, never exceptions. Tensor code that calls in (trainer/) turns a bad
//   status into TORCH_CHECK failures; see docs/trainer.md.
// - Reduction dtype is the tensors' dtype (the caller casts first); kAvg divides by world_size.
//
// Torch-light on purpose: at::Tensor is only forward-declared here.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"

namespace at {
class Tensor;
}

namespace tidal {

enum class ReduceOp { kSum, kAvg, kMax, kMin };
const char* ReduceOpName(ReduceOp op);

// A collective in flight (see Communicator::AllGatherAsync). Wait() once, from the driving thread.
class CommWork {
 public:
  virtual ~CommWork() = default;
  // CPU: returns the op's status. NCCL: makes the caller's current stream wait for the op.
  virtual absl::Status Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;  // "shm" | "nccl"

  // output [world * n] <- concat over ranks of input [n] (rank order).
  virtual absl::Status AllGather(const at::Tensor& input, const at::Tensor& output) = 0;
  // output [n] <- op over ranks of input[rank * n, (rank + 1) * n) ; input [world * n].
  virtual absl::Status ReduceScatter(const at::Tensor& input, const at::Tensor& output,
                                     ReduceOp op) = 0;
  // tensor <- op over ranks of tensor. Every rank ends with bitwise-identical values.
  virtual absl::Status AllReduce(const at::Tensor& tensor, ReduceOp op) = 0;
  // tensor <- root's tensor.
  virtual absl::Status Broadcast(const at::Tensor& tensor, int root) = 0;
  // Point-to-point; matched in call order per (sender, receiver) pair. Sizes must match.
  virtual absl::Status Send(const at::Tensor& tensor, int peer) = 0;
  virtual absl::Status Recv(const at::Tensor& tensor, int peer) = 0;
  virtual absl::Status Barrier() = 0;

  // Starts an all-gather that the caller overlaps with other work (FSDP prefetch). Backends
  // without asynchronous progress (shm) run it to completion here and return finished work;
  // the NCCL backend queues it on its communication stream. Only one call order rule: every
  // rank issues the same sequence of collectives, async ones included.
  virtual absl::StatusOr<std::unique_ptr<CommWork>> AllGatherAsync(const at::Tensor& input,
                                                                   const at::Tensor& output);
  // The reduce-scatter counterpart (FSDP: a layer's gradients reduce while the next layer's
  // backward computes), with the same completion rules as AllGatherAsync.
  virtual absl::StatusOr<std::unique_ptr<CommWork>> ReduceScatterAsync(const at::Tensor& input,
                                                                       const at::Tensor& output, ReduceOp op);
};

}  // namespace tidal
