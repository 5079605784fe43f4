// executor/blocking.h: SpawnBlocking, blocking work off the executor's
// threads, and Resolve, name resolution built on it.
//
// Reach for `SpawnBlocking` when a task must call something that blocks its
// thread (a blocking library, a file system that io_uring does not cover,
// getaddrinfo): the call runs on a separate pool of threads and the task
// awaits its result, suspended, while the executor runs other tasks.
//
//   int rows = co_await spindle::SpawnBlocking([&] { return db.Query(q); });
//   absl::StatusOr<std::vector<spindle::ResolvedAddress>> addrs =
//       co_await spindle::Resolve("example.com", 443);
//
// The pool: `DefaultBlockingPool()` is made at first use; a
// `BlockingPool` of your own is made by Create(options).  It starts a
// thread when a job arrives and no thread is idle, up to max_threads (jobs
// past that wait, first come first served), and a thread idle for
// keep_alive exits: it grows with the load and shrinks back to zero.
//
// GCC 12: pass a named callable, `auto fn = [s = std::move(s)] {...};
// co_await SpawnBlocking(std::move(fn));`.  GCC 12 destroys a closure
// temporary written inside a co_await expression twice (a compiler bug),
// which crashes when the lambda owns resources (captures a string by
// value); a lambda that captures only pointers and references is safe.
// A callable that captures the task's locals by reference must not outlive
// them: if the task may be cancelled while its job runs, capture by value.
//
// Results and errors: the awaiting task gets the callable's value, or its
// exception rethrown.  Cancellation: a job is not interrupted once it runs
// (a blocking call cannot be); if the awaiting task is cancelled first, a
// job that has not started is skipped, and a running one's result is
// dropped.  Destroying a BlockingPool stops new submissions (they fail with
// BlockingPoolClosedError at the await), lets the jobs already submitted
// finish, and joins its threads.

#ifndef SPINDLE_EXECUTOR_BLOCKING_H_
#define SPINDLE_EXECUTOR_BLOCKING_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "executor/oneshot.h"
#include "executor/task.h"

namespace spindle {

struct BlockingPoolOptions {
  // Most threads at once, 1..4096.
  size_t max_threads = 64;
  // How long a thread waits idle before it exits, 1 ms..1 h.
  std::chrono::nanoseconds keep_alive = std::chrono::seconds(10);
};

// Thrown at the await of a job submitted to a pool that is shutting down.
class BlockingPoolClosedError : public std::runtime_error {
 public:
  BlockingPoolClosedError()
      : std::runtime_error(
            "spindle: SpawnBlocking on a BlockingPool that is shutting down "
            "(the job was not run)") {}
};

namespace executor_internal {
struct BlockingJob {
  virtual ~BlockingJob() = default;
  // Runs the job unless its awaiter is gone; never throws.
  virtual void Run() noexcept = 0;
};
struct BlockingPoolState;

template <typename R>
using BlockingValue = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

template <typename R>
struct BlockingOutcome {
  std::variant<BlockingValue<R>, std::exception_ptr> v;
};

template <typename F, typename R>
struct BlockingJobOf final : BlockingJob {
  F fn;
  OneshotSender<BlockingOutcome<R>> tx;
  BlockingJobOf(F f, OneshotSender<BlockingOutcome<R>> t)
      : fn(std::move(f)), tx(std::move(t)) {}
  void Run() noexcept override {
    if (tx.receiver_gone()) return;  // its task was cancelled: skip it
    BlockingOutcome<R> out;
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
        out.v.template emplace<0>();
      } else {
        out.v.template emplace<0>(fn());
      }
    } catch (...) {
      out.v.template emplace<1>(std::current_exception());
    }
    tx.Send(std::move(out));
  }
};
}  // namespace executor_internal

class BlockingPool {
 public:
  static absl::StatusOr<std::unique_ptr<BlockingPool>> Create(
      BlockingPoolOptions options = {});
  // Waits for the jobs submitted (running and queued) to finish and the
  // threads to exit.  From one of the pool's own jobs it would wait for
  // itself: it aborts at once with a message instead.
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // co_await: runs `fn()` on a pool thread; yields its value or rethrows
  // its exception.  The job is submitted when the task is first awaited
  // (or spawned).  The pool must outlive the await.
  template <typename F>
  Task<std::invoke_result_t<F&>> Run(F fn) {
    using R = std::invoke_result_t<F&>;
    static_assert(!std::is_reference_v<R>,
                  "SpawnBlocking: return a value, not a reference");
    auto [tx, rx] = MakeOneshot<executor_internal::BlockingOutcome<R>>();
    Submit(std::make_unique<executor_internal::BlockingJobOf<F, R>>(
        std::move(fn), std::move(tx)));
    std::optional<executor_internal::BlockingOutcome<R>> out = co_await rx;
    if (!out) throw BlockingPoolClosedError();
    if (out->v.index() == 1) std::rethrow_exception(std::get<1>(out->v));
    if constexpr (!std::is_void_v<R>) co_return std::move(std::get<0>(out->v));
  }

  // Snapshots.
  size_t threads() const noexcept;
  size_t idle_threads() const noexcept;
  size_t queued() const noexcept;
  const BlockingPoolOptions& options() const noexcept { return options_; }

 private:
  explicit BlockingPool(BlockingPoolOptions options);
  // Queues the job (or drops it, so its awaiter sees the pool closed).
  void Submit(std::unique_ptr<executor_internal::BlockingJob> job);

  BlockingPoolOptions options_;
  std::shared_ptr<executor_internal::BlockingPoolState> state_;
};

// The process-wide pool SpawnBlocking uses (default options; made at first
// use, never destroyed).
BlockingPool& DefaultBlockingPool();

// co_await: `fn()` on the default blocking pool.
template <typename F>
Task<std::invoke_result_t<F&>> SpawnBlocking(F fn) {
  return DefaultBlockingPool().Run(std::move(fn));
}

// One address a name resolved to, ready for Connect / bind.
struct ResolvedAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = 0;  // AF_INET or AF_INET6
  // "127.0.0.1:80", "[::1]:80".
  std::string ToString() const;
  const sockaddr* sockaddr_ptr() const noexcept {
    return reinterpret_cast<const sockaddr*>(&addr);
  }
};

// co_await: the addresses `host` resolves to for TCP at `port`
// (getaddrinfo on the default blocking pool).  INVALID_ARGUMENT for an
// empty host; NOT_FOUND when the name does not resolve; UNAVAILABLE for a
// temporary failure; each message names the host and getaddrinfo's reason.
Task<absl::StatusOr<std::vector<ResolvedAddress>>> Resolve(std::string host,
                                                           uint16_t port);

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_BLOCKING_H_
