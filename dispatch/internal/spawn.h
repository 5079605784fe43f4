// dispatch/internal/spawn.h: starting one child for ProcessRunner.

#ifndef SPINDLE_DISPATCH_INTERNAL_SPAWN_H_
#define SPINDLE_DISPATCH_INTERNAL_SPAWN_H_

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "dispatch/process.h"

namespace spindle::dispatch_internal {

// A started child and the parent's ends of its pipes (all close-on-exec).
struct Spawned {
  pid_t pid = -1;
  int pidfd = -1;
  int stdin_fd = -1;  // a socket (sends use MSG_NOSIGNAL); -1: /dev/null
  int stdout_fd = -1;
  int stderr_fd = -1;
};

// posix_spawn of `spec` in its own process group.  On error nothing is left
// behind (no descriptor, no child).  The message names the binary and the
// errno (name and text).
absl::StatusOr<Spawned> Spawn(const dispatch::ProcessSpec& spec);

// "ENOENT (No such file or directory)".
std::string ErrnoText(int err);

}  // namespace spindle::dispatch_internal

#endif  // SPINDLE_DISPATCH_INTERNAL_SPAWN_H_
