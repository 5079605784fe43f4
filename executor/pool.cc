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
//     2. kDrain: Wait until the dispatcher has nothing queued or running
//        (Runtime-backed: until no submission is pending, counted by the
//        pool since a driver finishes an item after the dispatcher counts
//        it run; or until every driver task is gone, cancelled with its
//        Runtime: nothing would run the rest).
//     3. Quit every worker (an idle one at once, a busy one after its item)
//        and join the threads, or wait for every driver task to end.
//     4. Destroy the workers, then the dispatcher: it calls every item
//        still queued with ran = false, which resolves its handle with
//        Cancelled.  5. Destroy the process runner (nothing runs any more).
//
//   Runtime-backed pools.  Worker w runs a driver task (pinned to w) that
//   owns a dispatch::Worker.  It calls TryRunOne with `tl_taken` pointing at
//   a local: PoolItem::Dispatch then hands the item over instead of running
//   it, and the driver co_awaits item->RunOnDriver() (a process is awaited,
//   not waited for), then frees it.  With nothing to take, the driver parks:
//   it stores its Waker in its DriverState first, then ArmWake (false: work
//   came meanwhile, so it wakes itself); the dispatcher's on_wake takes the
//   Waker and wakes it.  If the Runtime cancels a driver, its frame's guard
//   frees the item it was running (RunOnDriver has resolved it), destroys
//   its Worker (which detaches it: no Quit waits for it, no on_wake comes
//   after) and counts it gone; the guard is a coroutine parameter, so this
//   also happens for a driver cancelled before its body ever ran.
#include "executor/pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "executor/internal/task_protocol.h"
#include "executor/run_process.h"
#include "executor/runtime.h"

namespace spindle {
namespace executor_internal {

namespace {
// Set by a driver task around TryRunOne: where Dispatch hands the item.
thread_local PoolItem** tl_taken = nullptr;
// The pool whose worker thread this is (a pool of its own threads; null
// elsewhere): Shutdown refuses to run there.
thread_local const PoolCore* tl_pool_core = nullptr;
}  // namespace

absl::StatusOr<LocalExecutor*> PoolThreadExecutor() {
  // Destroyed with the thread, on it (an executor's owner thread).
  thread_local std::unique_ptr<LocalExecutor> ex;
  if (ex == nullptr) {
    absl::StatusOr<std::unique_ptr<LocalExecutor>> made =
        ExecutorBuilder().Build();
    if (!made.ok()) return made.status();
    ex = std::move(*made);
  }
  return ex.get();
}

absl::Status ThrownStatus(const char* what) {
  try {
    throw;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, " threw: ", e.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(what, " threw an exception that is not a std::exception"));
  }
}

Task<void> PoolItem::RunOnDriver() {
  Execute(true);
  co_return;
}

void PoolItem::Dispatch(WorkItem* w, bool ran) noexcept {
  auto* item = static_cast<PoolItem*>(w);
  PoolCore* core = item->core;
  core->Dispatched();
  if (ran && !core->cancelling() && tl_taken != nullptr) {
    *tl_taken = item;  // the driver runs it (and frees it, and Finished)
    return;
  }
  item->Execute(ran && !core->cancelling());
  delete item;
  core->Finished();
}

// One driver task's state (see the protocol).  `worker` is the last member,
// so it is destroyed (detached, under the dispatcher's lock) before the
// Waker its on_wake callback touches.
struct DriverState {
  // Wakes the parked driver, if it is parked (the dispatcher's on_wake, or
  // the driver itself when ArmWake refuses).  Must not block: a short lock,
  // and a Wake that only queues.
  void WakeParked() noexcept {
    Waker w;
    {
      std::lock_guard<std::mutex> l(mu);
      w = std::move(waker);
    }
    w.Wake();
  }

  std::mutex mu;
  Waker waker;  // the parked driver's; under mu
  std::unique_ptr<dispatch::Worker> worker;
};

struct PoolCore::Drivers {
  std::vector<std::unique_ptr<DriverState>> states;
  std::vector<JoinHandle<void>> tasks;
};

namespace {

// Parks a driver until the dispatcher has work for it (or retires it).
struct Park {
  DriverState* s;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    {
      Waker w = Waker::SuspendCurrent(h);
      std::lock_guard<std::mutex> l(s->mu);
      s->waker = std::move(w);
    }
    // Work (or a Quit) came meanwhile: a wake during our own poll, which
    // re-queues us.
    if (!s->worker->ArmWake()) s->WakeParked();
  }
  void await_resume() const noexcept {}
};

// A driver's hold on its DriverState and PoolCore.  A coroutine parameter:
// the frame's copy is destroyed with the frame, also when the Runtime
// cancels the driver before its body ever ran; then it frees the item under
// way (RunOnDriver has resolved it), destroys the Worker (detaching it: no
// Quit waits for it, no on_wake comes after) and counts the driver gone.
class DriverLease {
 public:
  DriverLease(PoolCore* core, DriverState* s) noexcept : core_(core), s_(s) {}
  DriverLease(DriverLease&& o) noexcept
      : item(std::exchange(o.item, nullptr)),
        core_(std::exchange(o.core_, nullptr)),
        s_(o.s_) {}
  DriverLease(const DriverLease&) = delete;
  DriverLease& operator=(const DriverLease&) = delete;
  ~DriverLease() { Release(); }
  // Frees the item under way, detaches the worker, counts the driver gone;
  // once.  A retiring driver calls it before it returns: the frame (and so
  // this parameter) is destroyed only after the task has completed, and
  // Shutdown frees the DriverState and the core once it has.
  void Release() noexcept {
    if (core_ == nullptr) return;  // moved from, or released
    if (item != nullptr) {
      delete item;
      core_->Finished();
    }
    s_->worker.reset();
    std::exchange(core_, nullptr)->DriverGone();
  }
  PoolCore* core() const noexcept { return core_; }
  DriverState* state() const noexcept { return s_; }

  PoolItem* item = nullptr;  // taken, RunOnDriver under way

 private:
  PoolCore* core_;
  DriverState* s_;
};

Task<void> Drive(DriverLease lease) {
  DriverState* s = lease.state();
  for (;;) {
    PoolItem* taken = nullptr;
    tl_taken = &taken;
    const dispatch::TakeResult r = s->worker->TryRunOne();
    tl_taken = nullptr;
    if (r == dispatch::TakeResult::kRetired) {
      lease.Release();  // before completion (see Release)
      co_return;
    }
    if (r == dispatch::TakeResult::kEmpty) {
      co_await Park{s};
      continue;
    }
    if (taken != nullptr) {
      lease.item = taken;
      co_await taken->RunOnDriver();
      lease.item = nullptr;
      delete taken;
      lease.core()->Finished();
    }
    co_await YieldNow();  // the worker's other tasks run between items
  }
}

}  // namespace

PoolCore::PoolCore(int workers, size_t max_queue,
                   std::unique_ptr<dispatch::WorkDispatcher> d,
                   std::unique_ptr<dispatch::ProcessRunner> r,
                   Runtime* runtime)
    : workers_n_(workers),
      max_queue_(max_queue),
      dispatcher_(std::move(d)),
      runner_(std::move(r)) {
  if (runtime == nullptr) {
    for (int i = 0; i < workers; ++i) {
      workers_.push_back(dispatcher_->Attach());
      threads_.emplace_back([this, w = workers_.back().get()] {
        tl_pool_core = this;
        w->Run();
      });
    }
    return;
  }
  drivers_ = std::make_unique<Drivers>();
  live_drivers_.store(workers, std::memory_order_relaxed);  // before spawns
  for (int i = 0; i < workers; ++i) {
    auto st = std::make_unique<DriverState>();
    DriverState* raw = st.get();
    dispatch::WorkerOptions wo;
    wo.on_wake = [raw] { raw->WakeParked(); };  // under the dispatcher's lock
    st->worker = dispatcher_->Attach(std::move(wo));
    drivers_->states.push_back(std::move(st));
  }
  for (int i = 0; i < workers; ++i) {
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(static_cast<size_t>(i));
    drivers_->tasks.push_back(
        runtime->Spawn(Drive(DriverLease(this, drivers_->states[i].get())),
                       o));
  }
}

void PoolCore::DriverGone() noexcept {
  // seq_cst: the Dekker pair with WaitDrained's store of draining_.
  if (live_drivers_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      draining_.load(std::memory_order_seq_cst)) {
    std::lock_guard<std::mutex> l(drain_mu_);
    drain_cv_.notify_all();
  }
}

void PoolCore::WaitDrained() {
  if (drivers_ == nullptr) {
    dispatcher_->Wait(0, 0, absl::InfiniteDuration());
    return;
  }
  // Until nothing is pending, or no driver is left to run it (the Runtime
  // went first, a misuse the pool survives).  Dekker: this side stores
  // draining_ then reads the counters; Finished and DriverGone change a
  // counter then read draining_ (all seq_cst), and signal under drain_mu_.
  draining_.store(true, std::memory_order_seq_cst);
  std::unique_lock<std::mutex> l(drain_mu_);
  drain_cv_.wait(l, [&] {
    return pending_.load(std::memory_order_seq_cst) == 0 ||
           live_drivers_.load(std::memory_order_seq_cst) == 0;
  });
}

PoolCore::~PoolCore() { Shutdown(ShutdownMode::kDrain); }

absl::Status PoolCore::Admit() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) {
      return absl::FailedPreconditionError("Pool::Submit after Shutdown");
    }
    if (drivers_ != nullptr &&
        live_drivers_.load(std::memory_order_acquire) == 0) {
      return absl::FailedPreconditionError(
          "Pool::Submit: the Runtime this pool ran on is gone (destroy a "
          "Runtime-backed pool before its Runtime)");
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
  // seq_cst: see WaitDrained.  Only the last one of a drain signals.
  if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      draining_.load(std::memory_order_seq_cst)) {
    std::lock_guard<std::mutex> l(drain_mu_);
    drain_cv_.notify_all();
  }
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
  // Both modes wait for the items running (the caller's among them) and
  // join the threads (the caller's among them).
  if (tl_pool_core == this) [[unlikely]] {
    FatalMisuse(
        "Pool::Shutdown (or ~Pool) on one of the pool's own workers: it waits "
        "for the running items and joins the pool's threads, this one "
        "included; shut the pool down from a thread outside it");
  }
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
  if (drivers_ != nullptr && executor_internal::tl_executor != nullptr) {
    FatalMisuse(
        "Pool::Shutdown (or ~Pool) of a Runtime-backed pool on a thread that "
        "runs an executor: it waits for the pool's driver tasks and could "
        "block the worker one of them needs; shut the pool down from a "
        "plain thread");
  }
  if (mode == ShutdownMode::kDrain) WaitDrained();
  // Workers detached (drivers cancelled with their Runtime) are not active.
  (void)dispatcher_->Quit(dispatcher_->active_workers(),
                          absl::InfiniteDuration());
  for (std::thread& t : threads_) t.join();
  if (drivers_ != nullptr) {
    for (JoinHandle<void>& t : drivers_->tasks) (void)t.Wait();
    drivers_.reset();  // every Worker is gone already (the drivers' guards)
  }
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
    // The result, or the launcher's verdict when it is not the spec's.
    void SetResult(const dispatch::ProcessHandle& h) {
      if (absl::Status s = h.status(); !s.ok()) {
        slot->Set(std::move(s));
      } else {
        slot->Set(h.TakeResult());
      }
    }
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
      SetResult(*h);
      core->Untrack(*h);
    }
    // On a Runtime: the child is awaited, so the worker runs its other
    // tasks meanwhile.
    Task<void> RunOnDriver() override {
      absl::StatusOr<dispatch::ProcessHandle> h = core->runner().Start(spec);
      if (!h.ok()) {
        slot->Set(h.status());
        co_return;
      }
      core->Track(*h);
      // The frame destroyed before the result (the Runtime shut down):
      // kill the child, resolve Cancelled.
      struct Cleanup {
        Item* self;
        const dispatch::ProcessHandle& h;
        bool resolved = false;
        ~Cleanup() {
          if (!resolved) {
            h.Kill();
            self->slot->Set(absl::CancelledError(
                "the Runtime running the pool shut down while the process "
                "ran (it was killed)"));
          }
          self->core->Untrack(h);
        }
      } cleanup{this, *h};
      co_await WaitProcess(*h);
      SetResult(*h);
      cleanup.resolved = true;
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
  auto r = dispatch::ProcessRunner::Create(
      {.backend = "auto", .launcher = launcher_});
  if (!r.ok()) return r.status();
  int workers = workers_;
  if (runtime_ != nullptr) {
    const int n = static_cast<int>(runtime_->worker_count());
    if (!workers_set_) {
      workers = n;
    } else if (workers_ > n) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "PoolBuilder::Workers(%d) on a Runtime of %d workers; valid range "
          "[1, %d]",
          workers_, n, n));
    }
  }
  auto core = std::make_unique<executor_internal::PoolCore>(
      workers, max_queue_, std::move(*d), std::move(*r), runtime_);
  return std::unique_ptr<Pool>(new Pool(std::move(core)));
}

}  // namespace spindle
