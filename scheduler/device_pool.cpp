#include "scheduler/device_pool.h"

#include <charconv>


namespace tidal::scheduler {
namespace {

absl::StatusOr<int> ParseInt(std::string_view s, std::string_view spec) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pool.devices: '%s': expected a non-negative integer, found '%s'", spec, s));
  }
  return v;
}

}  // namespace

std::string DeviceSlot::Name() const {
  return absl::StrCat(kind == DeviceKind::kCpu ? "cpu:" : "cuda:", index);
}

std::vector<DeviceSlot> SlotsFromDeviceSet(const DeviceSet& set) {
  std::vector<DeviceSlot> out;
  for (int i : set.indices) {
    out.push_back({set.kind == DeviceSet::Kind::kCpu ? DeviceKind::kCpu : DeviceKind::kCuda, i});
  }
  return out;
}

absl::StatusOr<DeviceSlot> ParseDeviceName(std::string_view name) {
  std::string_view rest = name;
  DeviceSlot slot;
  if (rest.rfind("cpu:", 0) == 0) {
    slot.kind = DeviceKind::kCpu;
    rest.remove_prefix(4);
  } else if (rest.rfind("cuda:", 0) == 0) {
    slot.kind = DeviceKind::kCuda;
    rest.remove_prefix(5);
  } else {
    return absl::InvalidArgumentError(absl::StrFormat("device '%s': expected cpu:N or cuda:N", name));
  }
  TIDAL_ASSIGN_OR_RETURN(slot.index, ParseInt(rest, name));
  return slot;
}

DevicePool::DevicePool(std::vector<DeviceSlot> slots, int train_count) {
  for (size_t i = 0; i < slots.size(); ++i) {
    DeviceState d;
    d.slot = slots[i];
    d.home = static_cast<int>(i) < train_count ? Tag::kTrain : Tag::kRollout;
    d.tag = d.home;
    devices_.push_back(d);
  }
}

void DevicePool::Start(double now) {
  last_ = now;
  started_ = true;
}

void DevicePool::Advance(double now) {
  if (!started_ || now <= last_) return;
  double dt = now - last_;
  for (auto& d : devices_) {
    auto& bucket = d.busy ? d.time.busy : d.time.idle;
    bucket[static_cast<int>(d.tag)] += dt;
  }
  last_ = now;
}

void DevicePool::SetBusy(int device, bool busy, double now) {
  Advance(now);
  devices_.at(device).busy = busy;
}

void DevicePool::SetTag(int device, Tag tag, double now) {
  Advance(now);
  auto& d = devices_.at(device);
  if (d.tag == tag) return;
  d.tag = tag;
  ++d.tag_moves;
}

int DevicePool::CountTagged(Tag tag) const {
  int n = 0;
  for (const auto& d : devices_) n += d.tag == tag;
  return n;
}

DeviceTime DevicePool::Total() const {
  DeviceTime t;
  for (const auto& d : devices_) {
    for (int k = 0; k < 2; ++k) {
      t.busy[k] += d.time.busy[k];
      t.idle[k] += d.time.idle[k];
    }
  }
  return t;
}

}  // namespace tidal::scheduler
