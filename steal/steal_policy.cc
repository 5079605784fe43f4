#include "steal/steal_policy.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <numeric>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace spindle::steal {
namespace {

absl::Status CheckRange(const char* name, uint64_t value, uint64_t lo,
                        uint64_t hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("StealOptions.", name, " = ",
                                                 value, " is out of range [",
                                                 lo, ", ", hi, "]"));
}

absl::Status CheckDuration(const char* name, std::chrono::nanoseconds d,
                           std::chrono::nanoseconds lo,
                           std::chrono::nanoseconds hi) {
  if (d >= lo && d <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "StealOptions.", name, " = ", d.count(), " ns is out of range [",
      lo.count(), " ns, ", hi.count(), " ns]"));
}

// splitmix64: spreads a small seed (a worker index) over 64 bits.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

absl::Status StealOptions::Validate() const {
  using std::chrono::nanoseconds;
  constexpr nanoseconds kMaxBackoff = std::chrono::seconds(1);
  if (auto s = CheckRange("steal_budget", steal_budget, 1, 4096); !s.ok()) {
    return s;
  }
  if (auto s = CheckRange("victim_stride", victim_stride, 1, 1024); !s.ok()) {
    return s;
  }
  if (auto s = CheckRange("victim_probe_count", victim_probe_count, 1, 1024);
      !s.ok()) {
    return s;
  }
  if (auto s = CheckRange("batch_size", batch_size, 1, 128); !s.ok()) {
    return s;
  }
  if (auto s = CheckRange("locality_margin", locality_margin, 0, 4096);
      !s.ok()) {
    return s;
  }
  if (auto s = CheckRange("fail_cost", fail_cost, 0, 4096); !s.ok()) {
    return s;
  }
  if (auto s = CheckDuration("backoff_min", backoff_min, nanoseconds(0),
                             kMaxBackoff);
      !s.ok()) {
    return s;
  }
  if (auto s =
          CheckDuration("backoff_max", backoff_max, backoff_min, kMaxBackoff);
      !s.ok()) {
    return s;
  }
  return CheckRange("stealable_queue_capacity", stealable_queue_capacity, 1,
                    65536);
}

absl::StatusOr<StealPolicy> StealPolicy::Create(const StealOptions& options,
                                                uint64_t seed) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return StealPolicy(options, seed);
}

StealPolicy::StealPolicy(const StealOptions& options, uint64_t seed) noexcept
    : options_(options), rng_(Mix(seed) | 1) {}

StealPolicy::StealPolicy(StealPolicy&& other) noexcept
    : options_(other.options_), rng_(other.rng_), cooldown_(other.cooldown_) {
  counters_.Merge(other.counters_.Snapshot());
}

StealPolicy& StealPolicy::operator=(StealPolicy&& other) noexcept {
  options_ = other.options_;
  rng_ = other.rng_;
  cooldown_ = other.cooldown_;
  counters_.Reset();
  counters_.Merge(other.counters_.Snapshot());
  return *this;
}

size_t StealPolicy::VictimAt(size_t self, size_t workers, size_t stride,
                             size_t start, size_t k) noexcept {
  const size_t m = workers - 1;  // the victims: every worker but self
  const size_t step = stride % m;
  // gcd(0, m) == m: a stride that is a multiple of m walks one by one.
  const size_t cycle = m / std::gcd(step, m);
  // After each full cycle of the stride, shift by one so the walk covers
  // every residue: positions start + r*step + q are distinct for r < cycle,
  // q < m / cycle.
  const size_t pos = (start + (k % cycle) * step + k / cycle) % m;
  return (self + 1 + pos) % workers;
}

uint64_t StealPolicy::NextRandom() noexcept {
  // xorshift64: cheap, and only spreads scan starting points.
  uint64_t x = rng_;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  rng_ = x;
  return x;
}

}  // namespace spindle::steal
