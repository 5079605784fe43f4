// executor/pool.cc: Pool on a WorkDispatcher and a ProcessRunner.
//
// Protocol.
//   Admission: `queued_` counts submissions admitted and not yet taken by a
//   worker; Admit adds one and undoes it when that passes max_queue_ (so
//   concurrent submitters never overshoot).  A worker subtracts one as it
//   takes an item (PoolItem::Dispatch), as does the dispatcher's destructor
//   for each item it cancels.
//   Shutdown (once):
//     1. Under `mu_`: closed_ = true (Admit refuses from now on).  kCancel:
//        cancelling_ = true, and SIGKILL to every tracked process.  From
//        then on an item a worker takes is resolved Cancelled instead of
//        run, and a process started by an item taken just before is killed
//        as Track (under `mu_`) registers it.
//     2. kDrain: Wait until the dispatcher has nothing queued or running.
//     3. Quit every worker (an idle one at once, a busy one after its item)
//        and join the threads.
//     4. Destroy the workers, then the dispatcher: it calls every item
//        still queued with ran = false, which resolves its handle with
//        Cancelled.  5. Destroy the process runner (nothing runs any more).
#include "executor/pool.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace spindle {
namespace executor_internal {

void PoolItem::Dispatch(WorkItem* w, bool ran) noexcept {
  auto* item = static_cast<PoolItem*>(w);
  PoolCore* core = item->core;
  core->Dispatched();
  item->Execute(ran && !core->cancelling());
  delete item;
  core->Finished();
}

PoolCore::PoolCore(int workers, size_t max_queue,
                   std::unique_ptr<dispatch::WorkDispatcher> d,
                   std::unique_ptr<dispatch::ProcessRunner> r)
    : workers_n_(workers),
      max_queue_(max_queue),
      dispatcher_(std::move(d)),
      runner_(std::move(r)) {
  for (int i = 0; i < workers; ++i) {
    workers_.push_back(dispatcher_->Attach());
    threads_.emplace_back([w = workers_.back().get()] { w->Run(); });
  }
}

PoolCore::~PoolCore() { Shutdown(ShutdownMode::kDrain); }

absl::Status PoolCore::Admit() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) {
      return absl::FailedPreconditionError("Pool::Submit after Shutdown");
    }
  }
  // Relaxed: a counter; the item itself is published by the dispatcher.
  if (queued_.fetch_add(1, std::memory_order_relaxed) >= max_queue_) {
    queued_.fetch_sub(1, std::memory_order_relaxed);
    return absl::ResourceExhaustedError(absl::StrFormat(
        "Pool queue is full: %d submissions wait (MaxQueueSize %d)",
        max_queue_, max_queue_));
  }
  return absl::OkStatus();
}

void PoolCore::Enqueue(PoolItem* item, Priority p) noexcept {
  pending_.fetch_add(1, std::memory_order_relaxed);  // a count
  item->core = this;
  item->priority = p;
  dispatcher_->Submit(item);
}

void PoolCore::Dispatched() noexcept {
  queued_.fetch_sub(1, std::memory_order_relaxed);  // see Admit
}

void PoolCore::Finished() noexcept {
  pending_.fetch_sub(1, std::memory_order_relaxed);  // a count
}

size_t PoolCore::Pending() const {
  return pending_.load(std::memory_order_relaxed);  // a count
}

void PoolCore::Track(const dispatch::ProcessHandle& h) {
  std::lock_guard<std::mutex> l(mu_);
  if (cancelling_.load(std::memory_order_relaxed)) h.Kill();  // under mu_
  running_.push_back(h);
}

void PoolCore::Untrack(const dispatch::ProcessHandle& h) {
  std::lock_guard<std::mutex> l(mu_);
  running_.erase(std::find_if(running_.begin(), running_.end(),
                              [&](const dispatch::ProcessHandle& r) {
                                return r.pid() == h.pid();
                              }));
}

void PoolCore::Shutdown(ShutdownMode mode) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return;
    closed_ = true;
    if (mode == ShutdownMode::kCancel) {
      // Relaxed: read by Dispatch; a worker that misses it runs the item,
      // and Track kills a process it starts (both under mu_).
      cancelling_.store(true, std::memory_order_relaxed);
      for (const dispatch::ProcessHandle& h : running_) h.Kill();
    }
  }
  if (mode == ShutdownMode::kDrain) {
    dispatcher_->Wait(0, 0, absl::InfiniteDuration());
  }
  (void)dispatcher_->Quit(workers_n_, absl::InfiniteDuration());
  for (std::thread& t : threads_) t.join();
  workers_.clear();
  dispatcher_.reset();  // cancels what is still queued
  runner_.reset();
}

}  // namespace executor_internal

Pool::~Pool() { core_->Shutdown(ShutdownMode::kDrain); }

size_t Pool::PendingTasks() const { return core_->Pending(); }

void Pool::Shutdown(ShutdownMode mode) { core_->Shutdown(mode); }

absl::StatusOr<PoolHandle<dispatch::ProcessResult>> Pool::Submit(
    dispatch::ProcessSpec spec, Priority priority) {
  if (absl::Status s = spec.Validate(); !s.ok()) return s;
  using Slot = executor_internal::PoolSlot<dispatch::ProcessResult>;
  if (absl::Status s = core_->Admit(); !s.ok()) return s;
  auto slot = std::make_shared<Slot>();
  struct Item final : executor_internal::PoolItem {
    dispatch::ProcessSpec spec;
    std::shared_ptr<Slot> slot;
    void Execute(bool ran) noexcept override {
      if (!ran) {
        slot->Set(absl::CancelledError("Pool shut down before it ran"));
        return;
      }
      absl::StatusOr<dispatch::ProcessHandle> h = core->runner().Start(spec);
      if (!h.ok()) {
        slot->Set(h.status());
        return;
      }
      core->Track(*h);
      slot->Set(h->Wait());
      core->Untrack(*h);
    }
  };
  auto* item = new Item;
  item->spec = std::move(spec);
  item->slot = slot;
  core_->Enqueue(item, priority);
  return PoolHandle<dispatch::ProcessResult>(std::move(slot));
}

absl::StatusOr<std::unique_ptr<Pool>> PoolBuilder::Build() const {
  if (workers_ < 1 || workers_ > 1024) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PoolBuilder::Workers(%d); valid range [1, 1024]", workers_));
  }
  if (max_queue_ < 1 || max_queue_ > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PoolBuilder::MaxQueueSize(%d); valid range [1, %d]", max_queue_,
        size_t{1} << 30));
  }
  auto d = dispatch::WorkDispatcher::Create({});
  if (!d.ok()) return d.status();
  auto r = dispatch::ProcessRunner::Create({});
  if (!r.ok()) return r.status();
  auto core = std::make_unique<executor_internal::PoolCore>(
      workers_, max_queue_, std::move(*d), std::move(*r));
  return std::unique_ptr<Pool>(new Pool(std::move(core)));
}

}  // namespace spindle
