// executor/cancellation.cc: CancellationToken.

#include "executor/cancellation.h"

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace spindle {

using executor_internal::CancelNode;

CancellationToken::CancellationToken()
    : node_(std::make_shared<CancelNode>()) {}

CancellationToken CancellationToken::Child() const {
  auto child = std::make_shared<CancelNode>();
  {
    std::lock_guard<executor_internal::SyncMutex> lock(node_->mu);
    if (node_->cancelled.load(std::memory_order_relaxed)) {
      child->cancelled.store(true, std::memory_order_relaxed);
    } else {
      // Drop the links to children that are gone, now and then, so a
      // long-lived parent of many short-lived children stays small.
      auto& kids = node_->children;
      if (kids.size() >= 16 && (kids.size() & (kids.size() - 1)) == 0) {
        std::erase_if(kids, [](const std::weak_ptr<CancelNode>& w) {
          return w.expired();
        });
      }
      kids.push_back(child);
    }
  }
  return CancellationToken(std::move(child));
}

void CancellationToken::Cancel() const noexcept {
  // Iterative, so a deep chain of children does not deepen the stack; one
  // node's lock at a time.
  std::vector<std::shared_ptr<CancelNode>> pending{node_};
  while (!pending.empty()) {
    std::shared_ptr<CancelNode> n = std::move(pending.back());
    pending.pop_back();
    executor_internal::WakeSet wakes;
    std::vector<std::weak_ptr<CancelNode>> kids;
    {
      std::lock_guard<executor_internal::SyncMutex> lock(n->mu);
      if (n->cancelled.load(std::memory_order_relaxed)) continue;
      // release: pairs with the acquire of is_cancelled() / await_ready.
      n->cancelled.store(true, std::memory_order_release);
      while (!n->waiters.empty()) {
        wakes.Take(n->waiters, n->waiters.front(),
                   executor_internal::WaitOutcome::kBroadcast);
      }
      kids.swap(n->children);
    }
    wakes.Wake();
    for (auto& w : kids) {
      if (auto k = w.lock()) pending.push_back(std::move(k));
    }
  }
}

bool CancellationToken::Awaiter::await_suspend(
    std::coroutine_handle<> h) noexcept {
  std::lock_guard<executor_internal::SyncMutex> lock(node->mu);
  if (node->cancelled.load(std::memory_order_relaxed)) return false;
  waiter.task = executor_internal::SuspendForSync(h);
  node->waiters.PushBack(&waiter);
  suspended = true;
  return true;
}

namespace executor_internal {
absl::Status CancelledByToken() {
  return absl::CancelledError("cancelled by its CancellationToken");
}
}  // namespace executor_internal

}  // namespace spindle
