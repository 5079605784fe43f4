// The poll monitor; the protocol is described in monitor.h.

#include "executor/internal/monitor.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "executor/local_executor.h"
#include "timing/clock.h"

namespace spindle::executor_internal {
namespace {

constexpr uint64_t kMinPeriodNs = 250'000;
constexpr uint64_t kMaxBasePeriodNs = 25'000'000;
// While every poll the monitor sees is a new one (short polls, the common
// case) it backs off to this; a poll seen twice brings it back to the base
// period so that its length is measured to within a base period.
constexpr uint64_t kMaxProgressPeriodNs = 10'000'000;
constexpr uint64_t kMaxIdlePeriodNs = 50'000'000;

// The CPUs the process started on (a `taskset`), read when the library is
// loaded (before main, for a program linked with it).  The monitor thread
// runs there, not on whatever CPU the thread that built the
// first executor was pinned to: pinned with that executor, it would take
// CPU time from it and could not see its polls while they run.
cpu_set_t g_start_cpus;
bool g_start_cpus_ok = false;
[[gnu::constructor]] void ReadStartCpus() {
  g_start_cpus_ok =
      sched_getaffinity(0, sizeof(g_start_cpus), &g_start_cpus) == 0;
}

}  // namespace

Monitor& Monitor::Get() {
  static Monitor* monitor = new Monitor();  // lives until the process ends
  return *monitor;
}

void Monitor::Register(PollBeacon* beacon) {
  std::lock_guard<std::mutex> lock(mu_);
  beacons_.push_back(beacon);
  if (!started_) {
    started_ = true;
    std::thread([this] { Loop(); }).detach();
  }
}

void Monitor::Unregister(PollBeacon* beacon) {
  std::lock_guard<std::mutex> lock(mu_);
  beacons_.erase(std::remove(beacons_.begin(), beacons_.end(), beacon),
                 beacons_.end());
}

void Monitor::RunStarted() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_++ != 0) return;
    run_started_ = true;
    // A monitor in a timed wait of at most kMaxProgressPeriodNs samples
    // soon enough on its own: no wake-up (a program that runs an executor
    // many times in a row would otherwise wake it at every Run).
    if (waiting_ns_ <= kMaxProgressPeriodNs) return;
  }
  cv_.notify_one();
}

void Monitor::RunEnded() {
  std::lock_guard<std::mutex> lock(mu_);
  --running_;
}

uint64_t Monitor::BasePeriodLocked() const {
  uint64_t smallest = UINT64_MAX;
  for (const PollBeacon* b : beacons_) {
    if (b->slow_ns != 0) smallest = std::min(smallest, b->slow_ns);
    if (b->stuck_ns != 0) smallest = std::min(smallest, b->stuck_ns);
  }
  if (smallest == UINT64_MAX) return kMaxBasePeriodNs;
  return std::clamp(smallest / 4, kMinPeriodNs, kMaxBasePeriodNs);
}

Monitor::Sample Monitor::SampleLocked(uint64_t now_ns) {
  Sample result = Sample::kIdle;
  for (PollBeacon* b : beacons_) {
    // acquire: orders the id and name loads below after this one.
    const uint64_t seq = b->seq.load(std::memory_order_acquire);
    if ((seq & 1) == 0) continue;  // between polls
    if (seq != b->seen_seq) {
      if (result == Sample::kIdle) result = Sample::kProgress;
      b->seen_seq = seq;
      b->seen_ns = now_ns;
      b->slow_reported = false;
      b->stuck_reported = false;
      continue;
    }
    result = Sample::kLongPoll;
    const uint64_t running = now_ns - b->seen_ns;
    const bool slow = b->slow_ns != 0 && running >= b->slow_ns &&
                      !b->slow_reported;
    const bool stuck = b->stuck_ns != 0 && running >= b->stuck_ns &&
                       !b->stuck_reported;
    if (!slow && !stuck) continue;
    // acquire loads: pair with Begin's release stores of the id and name,
    // so an id or name of a later Begin makes the seq re-check below see
    // that Begin's seq; they also order the re-check after them.  This
    // poll's own id and name were stored right after its seq, at least one
    // sample ago.
    const uint64_t id = b->task_id.load(std::memory_order_acquire);
    const char* name = b->name.load(std::memory_order_acquire);
    // The name is copied while the poll still runs; the copy counts only if
    // the same poll is still running afterwards.  (A name must outlive its
    // task; a poll stuck this long ending during the copy is the one case
    // the re-check throws away.)
    std::string copy = name != nullptr ? std::string(name, strnlen(name, 64))
                                       : std::string("unnamed");
    if (b->seq.load(std::memory_order_acquire) != seq) continue;
    MonitorReport report;
    report.task_id = id;
    report.name = std::move(copy);
    report.running_ns = running;
    if (slow) {
      b->slow_reported = true;
      // For the tiers: the executor charges the task when the poll returns.
      b->slow_since_ns.store(b->seen_ns, std::memory_order_relaxed);
      b->slow_seq.store(seq, std::memory_order_release);
      b->slow_flag.store(true, std::memory_order_release);
      // relaxed: a statistic; Stats() may lag by a sample.
      b->slow_reports.fetch_add(1, std::memory_order_relaxed);
      report.kind = MonitorReport::Kind::kSlowPoll;
      if (b->hook) b->hook(report);
    }
    if (stuck) {
      b->stuck_reported = true;
      b->stuck_reports.fetch_add(1, std::memory_order_relaxed);
      report.kind = MonitorReport::Kind::kStuck;
      std::fprintf(stderr,
                   "spindle monitor: executor stuck: task %llu (%s) has been "
                   "in one poll for %llu ms (stuck threshold %llu ms)\n",
                   static_cast<unsigned long long>(id), report.name.c_str(),
                   static_cast<unsigned long long>(running / 1'000'000),
                   static_cast<unsigned long long>(b->stuck_ns / 1'000'000));
      if (b->hook) b->hook(report);
    }
  }
  return result;
}

void Monitor::Loop() {
  pthread_setname_np(pthread_self(), "spindle-monitor");
  // Best effort: a cpuset changed since the start may refuse it.
  if (g_start_cpus_ok) {
    sched_setaffinity(0, sizeof(g_start_cpus), &g_start_cpus);
  }
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t period = BasePeriodLocked();
  for (;;) {
    while (running_ == 0) {
      waiting_ns_ = UINT64_MAX;
      cv_.wait(lock);
      // relaxed: a statistic for tests.
      wakeups_.fetch_add(1, std::memory_order_relaxed);
    }
    const Sample sample = SampleLocked(timing::MonotonicClock::Now());
    const uint64_t base = BasePeriodLocked();
    switch (sample) {
      case Sample::kLongPoll:
        period = base;
        break;
      case Sample::kProgress:
        period = std::min(period * 2, std::max(base, kMaxProgressPeriodNs));
        break;
      case Sample::kIdle:
        period = std::min(period * 2, std::max(base, kMaxIdlePeriodNs));
        break;
    }
    // The period goes on from where it was before the monitor went idle:
    // a program that runs an executor many times in a row (a Run per
    // request, a benchmark) would otherwise sample from the base period
    // again at each Run, most of them short polls.  A poll that starts
    // with the Run is first seen within the progress period, as any
    // other is.
    if (run_started_) {
      run_started_ = false;
      period = std::min(period, std::max(base, kMaxProgressPeriodNs));
    }
    waiting_ns_ = period;
    cv_.wait_for(lock, std::chrono::nanoseconds(period));
    wakeups_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace spindle::executor_internal
