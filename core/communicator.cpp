#include "core/communicator.h"

#include <ATen/ATen.h>

namespace tidal {
namespace {

class DoneWork final : public CommWork {
 public:
  explicit DoneWork(absl::Status status) : status_(std::move(status)) {}
  absl::Status Wait() override { return status_; }

 private:
  absl::Status status_;
};

}  // namespace

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<CommWork>> Communicator::AllGatherAsync(const at::Tensor& input,
                                                                       const at::Tensor& output) {
  absl::Status s = AllGather(input, output);
  if (!s.ok()) return s;
  return std::unique_ptr<CommWork>(new DoneWork(absl::OkStatus()));
}

absl::StatusOr<std::unique_ptr<CommWork>> Communicator::ReduceScatterAsync(const at::Tensor& input,
                                                                           const at::Tensor& output, ReduceOp op) {
  absl::Status s = ReduceScatter(input, output, op);
  if (!s.ok()) return s;
  return std::unique_ptr<CommWork>(new DoneWork(absl::OkStatus()));
}

}  // namespace tidal
