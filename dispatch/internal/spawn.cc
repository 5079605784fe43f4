// dispatch/internal/spawn.cc: posix_spawn with our descriptors, environment,
// working directory and process group.
#include "dispatch/internal/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_format.h"

extern char** environ;

namespace spindle::dispatch_internal {
namespace {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd& operator=(Fd&& o) noexcept {
    Reset();
    fd_ = o.Release();
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::Status Errno(const dispatch::ProcessSpec& spec, const char* step,
                   int err) {
  const std::string msg = absl::StrFormat("cannot start '%s': %s: %s",
                                          spec.binary, step, ErrnoText(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
      return absl::ResourceExhaustedError(msg);
    case ENOEXEC:
    case E2BIG:
    case ELOOP:
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// "NAME=value" strings for the child.
std::vector<std::string> BuildEnv(const dispatch::ProcessSpec& spec) {
  std::vector<std::string> out;
  if (spec.env_mode != dispatch::EnvMode::kReplace) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      const std::string entry(*e);
      if (spec.env_mode == dispatch::EnvMode::kAdd) {
        const std::string name = entry.substr(0, entry.find('='));
        bool replaced = false;
        for (const auto& [k, v] : spec.env) replaced |= (k == name);
        if (replaced) continue;
      }
      out.push_back(entry);
    }
  }
  if (spec.env_mode != dispatch::EnvMode::kInherit) {
    for (const auto& [k, v] : spec.env) out.push_back(k + "=" + v);
  }
  return out;
}

class FileActions {
 public:
  FileActions() { ok_ = posix_spawn_file_actions_init(&fa_) == 0; }
  ~FileActions() {
    if (ok_) posix_spawn_file_actions_destroy(&fa_);
  }
  posix_spawn_file_actions_t* get() { return &fa_; }
  bool ok() const { return ok_; }

 private:
  posix_spawn_file_actions_t fa_;
  bool ok_ = false;
};

class Attr {
 public:
  Attr() { ok_ = posix_spawnattr_init(&a_) == 0; }
  ~Attr() {
    if (ok_) posix_spawnattr_destroy(&a_);
  }
  posix_spawnattr_t* get() { return &a_; }
  bool ok() const { return ok_; }

 private:
  posix_spawnattr_t a_;
  bool ok_ = false;
};

}  // namespace

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  const char* desc = strerrordesc_np(err);
  return absl::StrFormat("%s (%s)", name != nullptr ? name : "errno",
                         desc != nullptr ? desc : std::to_string(err).c_str());
}

absl::StatusOr<Spawned> Spawn(const dispatch::ProcessSpec& spec) {
  Fd cwd;
  if (!spec.working_dir.empty()) {
    cwd = Fd(::open(spec.working_dir.c_str(),
                    O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (cwd.get() < 0) {
      const std::string step =
          absl::StrFormat("working directory '%s'", spec.working_dir);
      return Errno(spec, step.c_str(), errno);
    }
  }
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Errno(spec, "pipe2", errno);
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return Errno(spec, "pipe2", errno);
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);
  Fd in_ours, in_child;
  if (!spec.stdin_data.empty()) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return Errno(spec, "socketpair", errno);
    }
    in_ours = Fd(sv[0]);
    in_child = Fd(sv[1]);
    ::shutdown(sv[0], SHUT_RD);  // stdin is one-way
  }

  FileActions fa;
  Attr attr;
  if (!fa.ok() || !attr.ok()) return Errno(spec, "posix_spawn setup", ENOMEM);
  int rc = 0;
  if (in_child.get() >= 0) {
    rc |= posix_spawn_file_actions_adddup2(fa.get(), in_child.get(), 0);
  } else {
    rc |= posix_spawn_file_actions_addopen(fa.get(), 0, "/dev/null", O_RDONLY,
                                           0);
  }
  rc |= posix_spawn_file_actions_adddup2(fa.get(), out_w.get(), 1);
  rc |= posix_spawn_file_actions_adddup2(fa.get(), err_w.get(), 2);
  if (cwd.get() >= 0) {
    rc |= posix_spawn_file_actions_addfchdir_np(fa.get(), cwd.get());
  }
  // Descriptors someone else opened without O_CLOEXEC stay out too.
  rc |= posix_spawn_file_actions_addclosefrom_np(fa.get(), 3);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1,
                  SIGUSR2, SIGALRM}) {
    sigaddset(&defaults, sig);
  }
  rc |= posix_spawnattr_setflags(
      attr.get(), POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                      POSIX_SPAWN_SETSIGDEF);
  rc |= posix_spawnattr_setpgroup(attr.get(), 0);
  rc |= posix_spawnattr_setsigmask(attr.get(), &none);
  rc |= posix_spawnattr_setsigdefault(attr.get(), &defaults);
  if (rc != 0) return Errno(spec, "posix_spawn setup", ENOMEM);

  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(spec.binary.c_str()));
  for (const std::string& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  char** env = environ;
  if (spec.env_mode != dispatch::EnvMode::kInherit) {
    env_strings = BuildEnv(spec);
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    env = envp.data();
  }

  pid_t pid = -1;
  const bool search = spec.binary.find('/') == std::string::npos;
  const int err =
      search ? posix_spawnp(&pid, spec.binary.c_str(), fa.get(), attr.get(),
                            argv.data(), env)
             : posix_spawn(&pid, spec.binary.c_str(), fa.get(), attr.get(),
                           argv.data(), env);
  if (err != 0) return Errno(spec, "exec", err);
  // The child has its copies now.
  out_w.Reset();
  err_w.Reset();
  in_child.Reset();

  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const int e = errno;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return Errno(spec, "pidfd_open", e);
  }
  // pidfd_open sets O_CLOEXEC on the new descriptor (Linux 5.3+).
  Spawned s;
  s.pid = pid;
  s.pidfd = pidfd;
  s.stdin_fd = in_ours.Release();
  s.stdout_fd = out_r.Release();
  s.stderr_fd = err_r.Release();
  return s;
}

}  // namespace spindle::dispatch_internal
