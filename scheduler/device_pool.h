// The device pool: one slot per device, each carrying a tag (rollout | train), with busy/idle
// time measured per tag.
//
// Contract:
// - Owned and mutated by the controller's event-loop thread only; not thread-safe.
// - Time is passed in explicitly (seconds on any monotonic clock) so the accounting is
//   deterministic in tests; the controller passes its steady clock.
// - A device is "busy" when the controller has work outstanding on it under its current tag
//   (rollout: sequences in flight; train: a train/SFT/eval/export step running). Every second
//   between Start() and Finish() lands in exactly one (tag, busy|idle) bucket, so
//   busy + idle = wall time per device.
// - `home` is the device's side: the tag the recipe gave it, until the elastic train group
//   (pool.elastic.resize) moves it (SetHome); `tag` is where the policy has it now.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/recipe.h"
#include "core/status.h"
#include "scheduler/tag.h"

namespace tidal::scheduler {

enum class DeviceKind { kCpu, kCuda };

struct DeviceSlot {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;
  std::string Name() const;  // "cpu:0", "cuda:3"
};

// The slots of the recipe's pool.devices (already parsed and validated by the recipe loader).
std::vector<DeviceSlot> SlotsFromDeviceSet(const DeviceSet& set);
// Parses one slot name as printed by DeviceSlot::Name() ("cpu:0", "cuda:3").
absl::StatusOr<DeviceSlot> ParseDeviceName(std::string_view name);


// Seconds spent per (tag, busy/idle) by one device.
struct DeviceTime {
  std::array<double, 2> busy{0, 0};  // indexed by Tag
  std::array<double, 2> idle{0, 0};
  double Busy() const { return busy[0] + busy[1]; }
  double Idle() const { return idle[0] + idle[1]; }
  double Total() const { return Busy() + Idle(); }
  double IdleFraction() const { return Total() > 0 ? Idle() / Total() : 0.0; }
};

struct DeviceState {
  DeviceSlot slot;
  Tag home = Tag::kRollout;
  Tag tag = Tag::kRollout;
  bool busy = false;
  int64_t tag_moves = 0;
  DeviceTime time;
};

class DevicePool {
 public:
  // The first `train_count` slots are tagged train, the rest rollout (train ranks 0..T-1 are
  // devices 0..T-1, so rank numbering matches device order).
  DevicePool(std::vector<DeviceSlot> slots, int train_count);

  int size() const { return static_cast<int>(devices_.size()); }
  const DeviceState& device(int i) const { return devices_.at(i); }
  const std::vector<DeviceState>& devices() const { return devices_; }

  // Starts the clocks (all devices idle under their home tag).
  void Start(double now);
  // Charges time up to `now` to each device's current (tag, busy) bucket.
  void Advance(double now);
  void SetBusy(int device, bool busy, double now);
  // Moves a device to `tag` (no-op when already there); counts the move.
  void SetTag(int device, Tag tag, double now);
  // The elastic train group changed: `device` now belongs to the train group (kTrain) or not.
  // Its current tag is the policy's business (SetTag).
  void SetHome(int device, Tag home) { devices_.at(device).home = home; }

  int CountTagged(Tag tag) const;
  // Sum over devices; IdleFraction() of the result is the pool's total idle fraction.
  DeviceTime Total() const;

 private:
  std::vector<DeviceState> devices_;
  double last_ = 0;
  bool started_ = false;
};

}  // namespace tidal::scheduler
