// Tensors as raw message frames: the bytes travel as-is in a frame, the body carries a TensorSpec
// (name, dtype, shape, frame index).
//
//   std::vector<Payload> frames;
//   Trajectory t{.tensors = {AddTensorFrame(frames, "tokens", tokens),
//                            AddTensorFrame(frames, "logprobs", logprobs)}};
//   router.Send(peer, t, std::move(frames));
//   ...
//   at::Tensor tokens = *TensorFromFrame(env, t.tensors[0]);
//
// Contract: CPU tensors only (a CUDA tensor is a caller bug: TORCH_CHECK). Sending does not copy a
// contiguous tensor: the frame holds a reference to its storage, so the caller must not modify
// the tensor in place until the message has left (after Send returns, ZeroMQ may still be
// reading it). Receiving does not copy either when the frame is suitably aligned: the tensor
// aliases the received frame and keeps it alive.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/message.h"

namespace tidal {

// Appends the tensor's bytes to `frames` and returns its spec (frame = its index there).
TensorSpec AddTensorFrame(std::vector<Payload>& frames, std::string name, const at::Tensor& t);

// The tensor a spec describes; InvalidArgument (naming the tensor) when the frame index is out
// of range, the dtype unknown, or the byte count does not match dtype and shape.
absl::StatusOr<at::Tensor> TensorFromFrame(const Envelope& env, const TensorSpec& spec);

// torch-style dtype names used on the wire: float32, bfloat16, int64, bool, ...
std::string DtypeName(at::ScalarType t);
absl::StatusOr<at::ScalarType> DtypeFromName(const std::string& name);

}  // namespace tidal
