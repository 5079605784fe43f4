// executor/blocking.cc: the blocking pool behind SpawnBlocking, and Resolve.

#include "executor/blocking.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace spindle {
namespace executor_internal {

struct BlockingPoolState {
  explicit BlockingPoolState(BlockingPoolOptions o) : options(o) {}
  const BlockingPoolOptions options;
  std::mutex mu;
  std::condition_variable work;  // a job arrived, or the pool closes
  std::condition_variable gone;  // a thread exited
  std::deque<std::unique_ptr<BlockingJob>> queue;
  size_t threads = 0;
  size_t idle = 0;
  bool closed = false;
};

namespace {

// The pool whose thread this is (null elsewhere): ~BlockingPool refuses to
// run on one of its own threads.
thread_local const BlockingPoolState* tl_pool = nullptr;

void PoolThread(std::shared_ptr<BlockingPoolState> s) {
  tl_pool = s.get();
  std::unique_lock<std::mutex> lock(s->mu);
  for (;;) {
    if (!s->queue.empty()) {
      std::unique_ptr<BlockingJob> job = std::move(s->queue.front());
      s->queue.pop_front();
      lock.unlock();
      job->Run();
      job.reset();  // its sender, and the callable's captures, go here
      lock.lock();
      continue;
    }
    if (s->closed) break;
    ++s->idle;
    const bool woken = s->work.wait_for(lock, s->options.keep_alive, [&] {
      return !s->queue.empty() || s->closed;
    });
    --s->idle;
    if (!woken) break;  // idle for keep_alive: shrink
  }
  --s->threads;
  s->gone.notify_all();
}

}  // namespace
}  // namespace executor_internal

absl::StatusOr<std::unique_ptr<BlockingPool>> BlockingPool::Create(
    BlockingPoolOptions options) {
  if (options.max_threads < 1 || options.max_threads > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("BlockingPoolOptions::max_threads ", options.max_threads,
                     " is out of range: it must be in [1, 4096]"));
  }
  if (options.keep_alive < std::chrono::milliseconds(1) ||
      options.keep_alive > std::chrono::hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("BlockingPoolOptions::keep_alive ",
                     absl::FormatDuration(absl::FromChrono(options.keep_alive)),
                     " is out of range: it must be in [1ms, 1h]"));
  }
  return std::unique_ptr<BlockingPool>(new BlockingPool(options));
}

BlockingPool::BlockingPool(BlockingPoolOptions options)
    : options_(options),
      state_(std::make_shared<executor_internal::BlockingPoolState>(options)) {}

BlockingPool::~BlockingPool() {
  // The wait below would wait for this thread to exit.
  if (executor_internal::tl_pool == state_.get()) [[unlikely]] {
    executor_internal::FatalMisuse(
        "BlockingPool destroyed by one of its own jobs: its destructor waits "
        "for every pool thread to exit, this one included; destroy it from "
        "a thread outside the pool");
  }
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->closed = true;
  state_->work.notify_all();
  // The threads run what was submitted, then exit.
  state_->gone.wait(lock, [&] { return state_->threads == 0; });
}

void BlockingPool::Submit(std::unique_ptr<executor_internal::BlockingJob> job) {
  std::unique_lock<std::mutex> lock(state_->mu);
  if (state_->closed) {
    lock.unlock();
    job.reset();  // its sender is dropped: the awaiter sees the pool closed
    return;
  }
  state_->queue.push_back(std::move(job));
  if (state_->queue.size() <= state_->idle) {
    state_->work.notify_one();
    return;
  }
  if (state_->threads >= options_.max_threads) return;  // waits its turn
  ++state_->threads;
  lock.unlock();
  try {
    std::thread(executor_internal::PoolThread, state_).detach();
  } catch (...) {
    // No thread: the job stays queued for the next thread; the awaiter
    // gets the error (and its job is skipped, its receiver being gone).
    lock.lock();
    --state_->threads;
    throw;
  }
}

size_t BlockingPool::threads() const noexcept {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->threads;
}

size_t BlockingPool::idle_threads() const noexcept {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->idle;
}

size_t BlockingPool::queued() const noexcept {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->queue.size();
}

BlockingPool& DefaultBlockingPool() {
  // Never destroyed: tasks may await it until the process exits.
  static BlockingPool* const pool = BlockingPool::Create().value().release();
  return *pool;
}

std::string ResolvedAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    return absl::StrCat(text, ":", ntohs(a->sin_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
  inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
  return absl::StrCat("[", text, "]:", ntohs(a->sin6_port));
}

namespace {

absl::StatusOr<std::vector<ResolvedAddress>> ResolveNow(const std::string& host,
                                                        uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    const std::string what = absl::StrCat(
        "Resolve(\"", host, "\", ", port,
        "): ", rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc));
    switch (rc) {
      case EAI_NONAME:
#ifdef EAI_NODATA
      case EAI_NODATA:
#endif
      case EAI_FAIL:
        return absl::NotFoundError(what);
      case EAI_AGAIN:
        return absl::UnavailableError(what);
      default:
        return absl::UnknownError(what);
    }
  }
  std::vector<ResolvedAddress> out;
  for (addrinfo* p = list; p != nullptr; p = p->ai_next) {
    if (p->ai_family != AF_INET && p->ai_family != AF_INET6) continue;
    if (p->ai_addrlen > sizeof(sockaddr_storage)) continue;
    ResolvedAddress a;
    std::memcpy(&a.addr, p->ai_addr, p->ai_addrlen);
    a.len = p->ai_addrlen;
    a.family = p->ai_family;
    out.push_back(a);
  }
  ::freeaddrinfo(list);
  if (out.empty()) {
    return absl::NotFoundError(absl::StrCat("Resolve(\"", host, "\", ", port,
                                            "): no IPv4 or IPv6 address"));
  }
  return out;
}

}  // namespace

Task<absl::StatusOr<std::vector<ResolvedAddress>>> Resolve(std::string host,
                                                           uint16_t port) {
  if (host.empty()) {
    co_return absl::InvalidArgumentError(
        "Resolve: the host name is empty (give a name or an address)");
  }
  // A named callable: GCC 12 destroys a closure temporary inside a
  // co_await expression twice (see blocking.h).
  auto resolve = [host = std::move(host), port] {
    return ResolveNow(host, port);
  };
  co_return co_await SpawnBlocking(std::move(resolve));
}

}  // namespace spindle
