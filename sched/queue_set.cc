// QueueSet: EEVDF across queues.  See queue_set.h for the model.
//
// Representation.  Virtual times are int64 offsets from an implicit origin v0
// (`key` = v_i - v0, `deadline` = vd_i - v0), in units of 2^-16 tick per unit
// of weight: a charge of s ticks adds dv = s * 2^16 / w_i, computed as
// (s * round(2^32 / w_i)) >> 16.  The exact zero-lag point is
// V = v0 + avg_ / load_ with avg_ = sum(w_i * key_i) and load_ = sum(w_i)
// over runnable queues; it is evaluated as ((avg_ * floor(2^62 / load_)) >>
// 62) + 1 (rounded up: at most two units over), so no division is needed
// to choose.  When a
// key passes 2^36 at a slice boundary every runnable key and deadline is
// shifted down by V (Renormalize, O(queues)); with the charge cap of 2^32
// ticks, requests <= 2^32 ticks and weights <= 10^4 every product stays below
// 2^63, and keys and deadlines stay within +-2^50, so a tree node can pack
// value << 8 | slot into one int64.
//
// States of a queue: idle (where == kIdle; its lag kept in vlag), or runnable
// and in exactly one of two trees: `eligible_` (keyed by deadline) or
// `waiting_` (keyed by key, i.e. the virtual time at which it becomes
// eligible).  A queue in `eligible_` was eligible when last looked at; V can
// step back when a queue joins with positive lag or leaves with negative lag,
// so ChooseQueue rechecks the winner and moves it to `waiting_` if needed.
// Only the chosen queue is charged, and a charge changes its key, which
// `eligible_` does not hold; so a charge inside a slice touches no tree.
//
// Slices.  `slice_.left` says the current queue is runnable and has not used
// up its request: Pick then pops from it again without choosing.  It is
// cleared by a slice exhaustion, the current queue going idle, a preempting
// wake-up (via slice_.preempt) and setup changes.
//
// Runnable-set invariant: every queue whose scheduler holds a task is
// runnable.  A runnable queue may be empty only while it is the current
// queue (its last task picked, charged or not, not pushed to since); PickSlow
// settles it first, so the pick / charge / re-push cycle never goes through
// an idle transition, and Charge and Push need no emptiness test.

#include "sched/queue_set.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <utility>

#include "absl/strings/str_cat.h"
#include "timing/clock.h"

namespace spindle::sched {

QueueSetConfig QueueSetConfig::Default() {
  QueueSetConfig c;
  c.sched_latency_ticks =
      std::max<uint64_t>(1, timing::TscClock::FromNanos(2'000'000));
  c.min_slice_ticks =
      std::max<uint64_t>(1, timing::TscClock::FromNanos(100'000));
  c.min_slice_ticks = std::min(c.min_slice_ticks, c.sched_latency_ticks);
  c.sched_latency_ticks = std::min(c.sched_latency_ticks, kMaxLatencyTicks);
  return c;
}

absl::Status QueueSetConfig::Validate() const {
  if (sched_latency_ticks == 0 || sched_latency_ticks > kMaxLatencyTicks) {
    return absl::InvalidArgumentError(
        absl::StrCat("sched_latency_ticks is ", sched_latency_ticks,
                     "; valid range 1..", kMaxLatencyTicks));
  }
  if (min_slice_ticks == 0 || min_slice_ticks > sched_latency_ticks) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_slice_ticks is ", min_slice_ticks,
                     "; valid range 1..", sched_latency_ticks,
                     " (sched_latency_ticks)"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- MinTree

QueueSet::MinTree::MinTree() : nodes_(new int64_t[2 * kMaxQueues]) {
  Reset(1);
}

void QueueSet::MinTree::Reset(uint32_t cap) noexcept {
  cap_ = cap;
  for (uint32_t n = 0; n < 2 * cap_; ++n) nodes_[n] = kInf;
}

absl::Status QueueSet::MinTree::Check() const {
  for (uint32_t n = 1; n < cap_; ++n) {
    if (nodes_[n] != std::min(nodes_[2 * n], nodes_[2 * n + 1])) {
      return absl::InternalError(absl::StrCat("tree node ", n, " is stale"));
    }
  }
  for (uint32_t i = 0; i < cap_; ++i) {
    const int64_t v = nodes_[cap_ + i];
    if (v != kInf && (v & (kMaxQueues - 1)) != i) {
      return absl::InternalError(absl::StrCat("tree leaf ", i, " slot"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- setup

QueueSet::QueueSet(QueueSetConfig config)
    : config_(config.Validate().ok() ? config : QueueSetConfig::Default()),
      q_(new Queue[kMaxQueues]),
      scan_key_(new int64_t[kMaxQueues]),
      scan_dl_(new int64_t[kMaxQueues]) {
  owned_.reserve(kMaxQueues);
  for (size_t i = 0; i < kMaxQueues; ++i) {
    scan_key_[i] = kScanIdle;
    scan_dl_[i] = 0;
  }
}

QueueSet::~QueueSet() = default;

absl::StatusOr<std::unique_ptr<QueueSet>> QueueSet::Create(
    QueueSetConfig config) {
  absl::Status s = config.Validate();
  if (!s.ok()) return s;
  return std::make_unique<QueueSet>(config);
}

absl::StatusOr<uint16_t> QueueSet::AddQueue(
    QueueId id, uint32_t share, std::unique_ptr<TaskScheduler> scheduler) {
  if (share < kMinShare || share > kMaxShare) {
    return absl::InvalidArgumentError(
        absl::StrCat("share ", share, " for queue id ", id,
                     " is out of range; valid range ", kMinShare, "..",
                     kMaxShare));
  }
  if (std::optional<uint16_t> existing = IndexOf(id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queue id ", id, " already exists (index ", *existing, ")"));
  }
  if (num_queues_ >= kMaxQueues) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot add queue id ", id, ": already ", num_queues_,
                     " queues; valid count 1..", kMaxQueues));
  }
  if (scheduler == nullptr) scheduler = std::make_unique<FifoScheduler>();
  if (!scheduler->Empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scheduler for queue id ", id, " already holds ", scheduler->Size(),
        " tasks; it must be empty (push tasks through the QueueSet)"));
  }
  const auto index = static_cast<uint16_t>(num_queues_);
  Queue& q = q_[index];
  q = Queue{};
  q.id = id;
  q.weight = share;
  q.inv_weight = ((uint64_t{1} << 32) + share / 2) / share;
  q.sched = scheduler.get();
  q.fifo = dynamic_cast<FifoScheduler*>(scheduler.get());
  owned_.push_back(std::move(scheduler));
  ++num_queues_;
  total_weight_ += share;
  cap_ = std::max(cap_, std::bit_ceil(static_cast<uint32_t>(num_queues_)));
  use_trees_ = num_queues_ > kScanMaxQueues;
  RecomputeSlices();
  RebuildTrees();
  slice_.left = false;
  return index;
}

std::optional<uint16_t> QueueSet::IndexOf(QueueId id) const {
  for (size_t i = 0; i < num_queues_; ++i) {
    if (q_[i].id == id) return static_cast<uint16_t>(i);
  }
  return std::nullopt;
}

absl::Status QueueSet::SetShare(uint16_t index, uint32_t share) {
  if (index >= num_queues_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queue index ", index, " is out of range; valid range 0..",
        static_cast<int64_t>(num_queues_) - 1));
  }
  if (share < kMinShare || share > kMaxShare) {
    return absl::InvalidArgumentError(
        absl::StrCat("share ", share, " for queue id ", q_[index].id,
                     " is out of range; valid range ", kMinShare, "..",
                     kMaxShare));
  }
  Queue& q = q_[index];
  const int64_t w_old = q.weight;
  const int64_t w_new = share;
  total_weight_ = total_weight_ - q.weight + share;
  if (q.runnable()) {
    const int64_t v = VirtualTime();
    // Keep lag and the rest of the request in ticks (Linux's reweight).
    const int64_t lag_scaled = w_old * (v - q.key);
    const int64_t rest_scaled = w_old * (q.deadline - q.key);
    avg_ -= w_old * q.key;
    load_ -= w_old;
    q.weight = share;
    q.key = v - lag_scaled / w_new;
    q.deadline = q.key + std::max<int64_t>(1, rest_scaled / w_new);
    Sync(index);
    avg_ += w_new * q.key;
    load_ += w_new;
    SetInvLoad();
  } else {
    q.weight = share;
    q.vlag = q.vlag * w_old / w_new;
  }
  q.inv_weight = ((uint64_t{1} << 32) + share / 2) / share;
  RecomputeSlices();
  RebuildTrees();
  slice_.left = false;
  return absl::OkStatus();
}

void QueueSet::RecomputeSlices() noexcept {
  for (size_t i = 0; i < num_queues_; ++i) {
    Queue& q = q_[i];
    const uint64_t share_of_latency =
        config_.sched_latency_ticks * q.weight / total_weight_;
    q.slice_ticks = std::max(config_.min_slice_ticks, share_of_latency);
    q.vslice = static_cast<int64_t>((q.slice_ticks << kVShift) / q.weight);
    if (q.vslice < 1) q.vslice = 1;
    // A request that shrank (a queue was added, a share changed) takes
    // effect now, not at the old, later deadline; kept lags obey the new
    // clamp.
    if (q.runnable()) {
      q.deadline = std::min(q.deadline, q.key + q.vslice);
      Sync(static_cast<uint16_t>(i));
    } else {
      q.vlag = std::clamp(q.vlag, -q.vslice, q.vslice);
    }
  }
}

void QueueSet::RebuildTrees() noexcept {
  eligible_.Reset(cap_);
  waiting_.Reset(cap_);
  if (!use_trees_) return;
  for (size_t i = 0; i < num_queues_; ++i) {
    const Queue& q = q_[i];
    if (q.where == kEligible) eligible_.Set(i, q.deadline);
    if (q.where == kWaiting) waiting_.Set(i, q.key);
  }
}

// ---------------------------------------------------------------- virtual time

void QueueSet::SetInvLoad() noexcept {
  inv_load_ =
      load_ > 0 ? (uint64_t{1} << 62) / static_cast<uint64_t>(load_) : 0;
}

int64_t QueueSet::VirtualTime() const noexcept {
  if (nr_running_ == 0) return idle_v_;
  // Rounded up, never down: the reciprocal and the shift each round down by
  // less than a unit, and a queue that joins with no lag is placed exactly
  // at V; read one unit low, V made it ineligible (no preemption, not
  // picked) until other queues ran.  One unit over the exact V is 2^-16 of
  // a tick per unit of weight.
  return static_cast<int64_t>(
             (static_cast<__int128>(avg_) * static_cast<__int128>(inv_load_)) >>
             62) +
         1;
}

uint16_t QueueSet::FindSolo() const noexcept {
  for (size_t w = 0; w < kMaxQueues / 64; ++w) {
    if (runnable_bits_[w] != 0) {
      return static_cast<uint16_t>(w * 64 +
                                   std::countr_zero(runnable_bits_[w]));
    }
  }
  return kNoQueue;
}

void QueueSet::Renormalize() noexcept {
  if (nr_running_ == 0) return;
  const int64_t v = avg_ / load_;
  for (size_t w = 0; w < kMaxQueues / 64; ++w) {
    for (uint64_t bits = runnable_bits_[w]; bits != 0; bits &= bits - 1) {
      const auto i = static_cast<uint16_t>(w * 64 + std::countr_zero(bits));
      Queue& q = q_[i];
      q.key -= v;
      q.deadline -= v;
      Sync(i);
    }
  }
  avg_ -= load_ * v;
  RebuildTrees();
}

// Files a runnable queue under the tree its eligibility at `v` calls for.
void QueueSet::Place(uint16_t index, int64_t v) noexcept {
  Queue& q = q_[index];
  if (!use_trees_) {
    q.where = kEligible;  // Scan mode: one set, eligibility checked by scan.
    return;
  }
  if (q.key <= v) {
    q.where = kEligible;
    eligible_.Set(index, q.deadline);
  } else {
    q.where = kWaiting;
    waiting_.Set(index, q.key);
  }
}

void QueueSet::Join(uint16_t index) noexcept {
  Queue& q = q_[index];
  const int64_t v = VirtualTime();
  int64_t lag = q.vlag;
  // Joining with lag moves V toward the newcomer; inflate the kept lag so the
  // newcomer's lag against the new V is exactly what it kept (Linux 6.6
  // place_entity).
  if (load_ > 0) lag += lag * static_cast<int64_t>(q.weight) / load_;
  q.key = v - lag;
  q.deadline = q.key + q.vslice;
  q.vlag = 0;
  avg_ += static_cast<int64_t>(q.weight) * q.key;
  load_ += q.weight;
  SetInvLoad();
  runnable_bits_[index / 64] |= uint64_t{1} << (index % 64);
  ++nr_running_;
  if (nr_running_ == 1) solo_ = index;
  Place(index, VirtualTime());
  Sync(index);
}

void QueueSet::Leave(uint16_t index) noexcept {
  Queue& q = q_[index];
  const int64_t v = VirtualTime();
  q.vlag = std::clamp(v - q.key, -q.vslice, q.vslice);
  avg_ -= static_cast<int64_t>(q.weight) * q.key;
  load_ -= q.weight;
  if (use_trees_) {
    if (q.where == kEligible) {
      eligible_.Clear(index);
    } else {
      waiting_.Clear(index);
    }
  }
  q.where = kIdle;
  Sync(index);
  runnable_bits_[index / 64] &= ~(uint64_t{1} << (index % 64));
  --nr_running_;
  if (current_ == index) slice_.left = false;
  if (nr_running_ == 0) {
    // Nothing refers to v0 any more: restart virtual time at 0.
    avg_ = 0;
    load_ = 0;
    idle_v_ = 0;
  } else if (nr_running_ == 1) {
    solo_ = FindSolo();
  }
  SetInvLoad();
}

// ---------------------------------------------------------------- hot path

uint16_t QueueSet::ScanChoose(int64_t v) const noexcept {
  // Branch-free over contiguous arrays: an ineligible queue's deadline is
  // replaced by kBig, and (deadline << 8 | index) is minimised, so the loop
  // has no data-dependent branch.  Idle queues carry key kScanIdle, which V
  // never reaches.  Runnable keys and deadlines are within +-2^50.
  constexpr int64_t kBig = int64_t{1} << 54;
  const int64_t* key = scan_key_.get();
  const int64_t* dl = scan_dl_.get();
  const auto n = static_cast<uint32_t>(num_queues_);
  int64_t best = kInf;
  for (uint32_t i = 0; i < n; ++i) {
    const int64_t ineligible = (v - key[i]) >> 63;  // -1 when key > v.
    const int64_t cand = (dl[i] & ~ineligible) | (kBig & ineligible);
    best = std::min(
        best, static_cast<int64_t>((static_cast<uint64_t>(cand) << 8) | i));
  }
  if ((best >> 8) < kBig) [[likely]] {
    return static_cast<uint16_t>(best & 0xff);
  }
  // V is rounded down by < 1 unit; if that hid every queue, take the least
  // eligible time (EEVDF guarantees some queue is eligible).
  int64_t least = kInf;
  uint16_t pick = kNoQueue;
  for (uint32_t i = 0; i < n; ++i) {
    if (key[i] < least) {
      least = key[i];
      pick = static_cast<uint16_t>(i);
    }
  }
  return pick;
}

uint16_t QueueSet::ChooseQueue() noexcept {
  const int64_t v = VirtualTime();
  if (!use_trees_) {
    const uint16_t w = ScanChoose(v);
#ifndef NDEBUG
    for (size_t i = 0; i < num_queues_; ++i) {
      assert(!q_[i].runnable() || q_[i].key > v ||
             q_[i].deadline >= q_[w].deadline);
    }
#endif
    return w;
  }
  for (;;) {
    // Queues whose eligible time V has reached join the eligible tree.
    while (waiting_.min() <= v) {
      const uint32_t j = waiting_.argmin();
      waiting_.Clear(j);
      q_[j].where = kEligible;
      eligible_.Set(j, q_[j].deadline);
    }
    if (eligible_.min() == kInf) {
      // V is rounded down by < 1 unit; if that hid every queue, take the
      // least eligible time (EEVDF guarantees some queue is eligible).
      const uint32_t j = waiting_.argmin();
      waiting_.Clear(j);
      q_[j].where = kEligible;
      eligible_.Set(j, q_[j].deadline);
      return static_cast<uint16_t>(j);
    }
    const uint32_t w = eligible_.argmin();
    if (q_[w].key <= v) {
#ifndef NDEBUG
      // Exact EEVDF: no eligible queue has an earlier deadline.
      for (size_t i = 0; i < num_queues_; ++i) {
        assert(!q_[i].runnable() || q_[i].key > v ||
               q_[i].deadline >= q_[w].deadline);
      }
#endif
      return static_cast<uint16_t>(w);
    }
    // V stepped back since it was filed: not eligible after all.
    eligible_.Clear(w);
    q_[w].where = kWaiting;
    waiting_.Set(w, q_[w].key);
  }
}

TaskNode* QueueSet::PickSlow() noexcept {
  slice_.preempt = false;
  // The current queue's idle transition was deferred to here (see header).
  if (current_ != kNoQueue && q_[current_].runnable() &&
      QueueEmpty(q_[current_])) {
    Leave(current_);
  }
  for (;;) {
    if (nr_running_ == 0) {
      current_ = kNoQueue;
      slice_.left = false;
      return nullptr;
    }
    const uint16_t i = nr_running_ == 1 ? solo_ : ChooseQueue();
    Queue& q = q_[i];
    TaskNode* t = PopFrom(q);
    if (t == nullptr) [[unlikely]] {
      Leave(i);
      continue;
    }
    ++taken_;
    ++q.picks;
    current_ = i;
    slice_.left = true;
    return t;
  }
}

// The charged queue used up its request (or its key needs renormalizing).
void QueueSet::ChargeSlow(uint16_t index) noexcept {
  Queue& q = q_[index];
  if (q.key > kRenormKey) [[unlikely]] Renormalize();
  if (q.key >= q.deadline) {
    q.deadline = q.key + q.vslice;
    Sync(index);
    ++q.exhaustions;
    if (index == current_) slice_.left = false;
    // File it now by its eligibility (usually: not eligible, it just used a
    // whole request), saving ChooseQueue the move.
    if (use_trees_) {
      if (q.where == kEligible) eligible_.Clear(index);
      if (q.where == kWaiting) waiting_.Clear(index);
      Place(index, VirtualTime());
    }
  } else if (q.where == kWaiting) {
    waiting_.Set(index, q.key);
  }
}

// A charge to a queue that is not in the eligible tree: it is waiting (it was
// picked, then moved by a later choice before this charge) or idle (it went
// idle before the charge).
void QueueSet::ChargeIdle(Queue& q, int64_t dv) noexcept {
  const auto index = static_cast<uint16_t>(&q - q_.get());
  if (q.where == kWaiting) {
    q.key += dv;
    Sync(index);
    avg_ += static_cast<int64_t>(q.weight) * dv;
    ChargeSlow(index);
    return;
  }
  // Idle: the service still counts against the kept lag.
  q.vlag = std::clamp(q.vlag - dv, -q.vslice, q.vslice);
}

void QueueSet::PushJoin(uint16_t index) noexcept {
  Join(index);
  const Queue& q = q_[index];
  const uint16_t c = current_;
  // Would EEVDF pick the newcomer before the current queue's request ends?
  if (slice_.left && c != index && q.key <= VirtualTime() &&
      q.deadline < q_[c].deadline) {
    slice_.preempt = true;
    ++q_[c].preemptions;
  }
}

bool QueueSet::Remove(TaskNode* task) noexcept {
  if (!task->queued) return false;
  const uint16_t i = task->queue_index;
  if (i >= num_queues_) return false;
  Queue& q = q_[i];
  if (!q.sched->Remove(task)) return false;
  task->queued = false;
  ++taken_;
  // The current queue's idle transition waits for the next Pick, as after
  // its last task was picked.
  if (q.runnable() && i != current_ && q.sched->Empty()) Leave(i);
  return true;
}

}  // namespace spindle::sched
