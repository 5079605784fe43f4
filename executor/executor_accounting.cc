// executor/executor_accounting.cc: LocalExecutor's bookkeeping off the hot
// path: statistics snapshots, the preemption check of slow polls (see
// internal/preemption.h) and reports of exceptions nobody will see.

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <exception>
#include <string>

#include "absl/base/internal/raw_logging.h"
#include "executor/internal/preemption.h"
#include "executor/local_executor.h"
#include "timing/clock.h"

namespace spindle {

using executor_internal::TaskHeader;

void LocalExecutor::ReportUnhandled(TaskHeader* t) noexcept {
  // Nobody holds a handle to see the exception: count it, and say so once
  // per executor so it is not lost silently.
  if (stats_.unhandled_exceptions++ != 0) return;
  std::string what = "unknown exception";
  std::exception_ptr e = executor_internal::ErrorOf(t);
  if (e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
  }
  ABSL_RAW_LOG(WARNING,
               "spindle: detached task %llu (%s) ended by an exception that "
               "nobody will see: %s (further ones are only counted in "
               "ExecutorStats::unhandled_exceptions)",
               static_cast<unsigned long long>(t->ctx.task_id),
               t->ctx.name != nullptr ? t->ctx.name : "unnamed", what.c_str());
}

void LocalExecutor::MarkCpu(uint64_t now) noexcept {
  rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return;
  // The CPU time from the thread clock: getrusage's is only brought up to
  // date at scheduler ticks (up to 4 ms stale at HZ=250), far too coarse to
  // judge a millisecond poll.
  timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return;
  stats_.cpu_time_reads++;
  cpu_mark_.tick = now;
  cpu_mark_.cpu_ns = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u +
                     static_cast<uint64_t>(ts.tv_nsec);
  cpu_mark_.voluntary = static_cast<uint64_t>(ru.ru_nvcsw);
  cpu_mark_.involuntary = static_cast<uint64_t>(ru.ru_nivcsw);
}

uint64_t LocalExecutor::DiscountPreemption(uint64_t elapsed,
                                           uint64_t now) noexcept {
  const CpuMark before = cpu_mark_;
  MarkCpu(now);
  if (cpu_mark_.tick != now) return elapsed;  // getrusage failed
  // Since the previous mark the thread was switched out only involuntarily
  // (preempted, never blocked): the wall time it did not run is the OS's,
  // and the task's poll is at least `elapsed` minus that.  A task that
  // blocked (a voluntary switch: sleep, blocking I/O) is judged on wall
  // time, since it blocked the whole executor.
  if (cpu_mark_.involuntary == before.involuntary ||
      cpu_mark_.voluntary != before.voluntary) {
    return elapsed;
  }
  const uint64_t wall_ns = timing::TscClock::ToNanos(now - before.tick);
  const uint64_t cpu_ns = cpu_mark_.cpu_ns - before.cpu_ns;
  if (wall_ns <= cpu_ns) return elapsed;
  stats_.preempted_polls++;
  const uint64_t judged_ns = executor_internal::JudgedPollNs(
      timing::TscClock::ToNanos(elapsed), wall_ns, cpu_ns);
  return std::min(elapsed, timing::TscClock::FromNanos(judged_ns));
}

ExecutorStats LocalExecutor::Stats() const {
  ExecutorStats s = stats_;
  s.share_scale = share_scale_;
  // relaxed: counters the monitor bumps; a snapshot may lag one sample.
  s.monitor_slow_polls = beacon_.slow_reports.load(std::memory_order_relaxed);
  s.monitor_stuck_polls = beacon_.stuck_reports.load(std::memory_order_relaxed);
  s.ns_per_tick =
      static_cast<double>(timing::TscClock::ToNanos(1'000'000)) / 1e6;
  s.max_ns_without_driver_yield =
      timing::TscClock::ToNanos(max_ticks_without_driver_);
  s.idle_ns = timing::TscClock::ToNanos(idle_ticks_);
  const size_t n = queue_set_->num_queues();
  s.queues.resize(n);
  // Busy time is the service charged to the queues (derived, not counted).
  uint64_t busy_ticks = 0;
  for (size_t i = 0; i < n; ++i) {
    s.queues[i].sched = queue_set_->Stats(static_cast<uint16_t>(i));
    if (!isolation_index_.has_value() || i != *isolation_index_) {
      s.queues[i].sched.share /= share_scale_;
    }
    busy_ticks += s.queues[i].sched.service_ticks;
    s.queues[i].delay_histogram = delay_histograms_[i];
    s.queues[i].poll_histogram = poll_histograms_[i];
    s.queues[i].preemptions = preemptions_[i];
  }
  s.busy_ns = timing::TscClock::ToNanos(busy_ticks);
  if (tiers_ != nullptr) s.tiers = tiers_->Metrics();
  return s;
}

}  // namespace spindle
