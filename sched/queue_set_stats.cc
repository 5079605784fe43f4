// QueueSet's statistics and its invariant check (not on the hot path).
// The representation is described at the top of queue_set.cc.

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sched/queue_set.h"
#include "timing/clock.h"

namespace spindle::sched {

// ---------------------------------------------------------------- stats

int64_t QueueSet::LagTicks(uint16_t index) const noexcept {
  if (index >= num_queues_) return 0;
  const Queue& q = q_[index];
  const int64_t vlag = q.runnable() ? VirtualTime() - q.key : q.vlag;
  return static_cast<int64_t>(q.weight) * vlag / (int64_t{1} << kVShift);
}

QueueStats QueueSet::Stats(uint16_t index) const {
  QueueStats s;
  if (index >= num_queues_) return s;
  const Queue& q = q_[index];
  s.id = q.id;
  s.share = q.weight;
  s.service_ticks = q.service;
  s.polls = q.polls;
  s.picks = q.picks;
  s.lag_ticks = LagTicks(index);
  s.slice_exhaustions = q.exhaustions;
  s.overruns = q.overruns;
  s.preemptions = q.preemptions;
  s.queued = q.sched->Size();
  s.slice_ticks = q.slice_ticks;
  s.runnable = q.runnable();
  return s;
}

std::vector<QueueStats> QueueSet::Snapshot() const {
  std::vector<QueueStats> out;
  out.reserve(num_queues_);
  for (size_t i = 0; i < num_queues_; ++i) {
    out.push_back(Stats(static_cast<uint16_t>(i)));
  }
  return out;
}

absl::Status QueueSet::CheckInvariants() const {
  int64_t avg = 0;
  int64_t load = 0;
  uint32_t nr = 0;
  size_t size = 0;
  for (size_t i = 0; i < num_queues_; ++i) {
    const Queue& q = q_[i];
    size += q.sched->Size();
    const bool bit = (runnable_bits_[i / 64] >> (i % 64)) & 1;
    if (bit != q.runnable()) {
      return absl::InternalError(absl::StrCat("queue ", i, " runnable bit"));
    }
    if (scan_key_[i] != (q.runnable() ? q.key : kScanIdle) ||
        (q.runnable() && scan_dl_[i] != q.deadline)) {
      return absl::InternalError(absl::StrCat("queue ", i, " scan copy"));
    }
    if (!use_trees_ && q.where == kWaiting) {
      return absl::InternalError(absl::StrCat("queue ", i, " waiting in scan mode"));
    }
    const int64_t want_elig =
        use_trees_ && q.where == kEligible ? q.deadline : kInf;
    const int64_t want_wait = use_trees_ && q.where == kWaiting ? q.key : kInf;
    if (eligible_.at(i) != want_elig || waiting_.at(i) != want_wait) {
      return absl::InternalError(absl::StrCat("queue ", i, " tree leaves"));
    }
    if (!q.runnable()) {
      if (!q.sched->Empty()) {
        return absl::InternalError(
            absl::StrCat("queue ", i, " holds tasks but is idle"));
      }
      if (q.vlag > q.vslice || q.vlag < -q.vslice) {
        return absl::InternalError(absl::StrCat(
            "queue ", i, " kept lag ", q.vlag, " beyond +-", q.vslice));
      }
      continue;
    }
    ++nr;
    avg += static_cast<int64_t>(q.weight) * q.key;
    load += q.weight;
    if (q.sched->Empty() && i != current_) {
      return absl::InternalError(
          absl::StrCat("queue ", i, " is runnable but empty"));
    }
    if (q.deadline <= q.key) {
      return absl::InternalError(absl::StrCat(
          "queue ", i, " deadline ", q.deadline, " <= key ", q.key));
    }
    if (q.key > kRenormKey + (int64_t{1} << 50)) {
      return absl::InternalError(
          absl::StrCat("queue ", i, " key ", q.key, " not renormalized"));
    }
  }
  if (nr != nr_running_ || avg != avg_ || load != load_) {
    return absl::InternalError(absl::StrCat("sums: nr ", nr, "/", nr_running_,
                                            " avg ", avg, "/", avg_, " load ",
                                            load, "/", load_));
  }
  if (size != Size()) {
    return absl::InternalError(
        absl::StrCat("size ", size, " != counted ", Size()));
  }
  if (nr == 1 && !q_[solo_].runnable()) {
    return absl::InternalError("solo queue is not runnable");
  }
  if (slice_.left && (current_ == kNoQueue || !q_[current_].runnable())) {
    return absl::InternalError("slice left on a queue that is not runnable");
  }
  if (nr > 0) {
    // V is the weighted mean of the keys: the lags sum to zero (rounding).
    const int64_t v = VirtualTime();
    const __int128 residual = static_cast<__int128>(load_) * v - avg_;
    if (residual > load_ || residual < -2 * load_) {
      return absl::InternalError(
          absl::StrCat("lag sum residual ", static_cast<int64_t>(residual)));
    }
  }
  if (absl::Status s = eligible_.Check(); !s.ok()) return s;
  return waiting_.Check();
}

}  // namespace spindle::sched
