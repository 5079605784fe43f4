#include "executor/io.h"

#include <string>

#include "executor/local_executor.h"

namespace spindle {

absl::StatusOr<std::unique_ptr<ReactorDriver>> ReactorDriver::Create(
    const reactor::ReactorOptions& options) {
  absl::StatusOr<std::unique_ptr<reactor::Reactor>> r =
      reactor::Reactor::Create(options);
  if (!r.ok()) return r.status();
  return std::unique_ptr<ReactorDriver>(new ReactorDriver(std::move(*r)));
}

int ReactorDriver::Poll(uint64_t timeout_ns) noexcept {
  return reactor_->Poll(timeout_ns);
}

void ReactorDriver::Wake() noexcept {
  // From another executor's thread with its own ring: one MSG_RING SQE on
  // that ring, no eventfd write.  Otherwise the eventfd.
  reactor::Reactor* source = executor_internal::ThisThreadReactor();
  if (source != nullptr && source != reactor_.get()) {
    (void)reactor_->WakeFrom(*source);  // falls back to Wake() by itself
    return;
  }
  reactor_->Wake();
}

void ReactorDriver::Cancel(void* op) noexcept {
  reactor_->Cancel(static_cast<reactor::Operation*>(op));
}

void ReactorDriver::Shutdown() noexcept {
  // The reactor's destructor cancels every pending operation and runs every
  // callback (waking the tasks, which are then cancelled, not run).
  reactor_.reset();
}

std::string_view ReactorDriver::Name() const noexcept {
  if (reactor_ == nullptr) return "reactor (shut down)";
  return reactor::BackendName(reactor_->backend());
}

}  // namespace spindle
