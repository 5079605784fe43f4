/* The C interface from C (C11, -Wall -Wextra -Werror -pedantic): every
 * function, its error paths (NULL handles, bad attributes, a size from a
 * newer version), tasks that sleep, yield, read and write a pipe, abort and
 * join with a timeout, and a spawn from another thread. */

#define _POSIX_C_SOURCE 200809L /* mkstemp, pipe, pthreads under -std=c11 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor/spindle.h"

static int failures = 0;

#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n",    \
              __FILE__, __LINE__, #cond, spindle_last_error());        \
      failures++;                                                      \
    }                                                                  \
  } while (0)

static int Add(spindle_task_t* self, void* arg) {
  int* v = (int*)arg;
  CHECK(spindle_yield(self) == 0);
  CHECK(spindle_yield_maybe(self) == 0);
  CHECK(spindle_sleep(self, 1000000) == 0); /* 1 ms */
  return *v + 1;
}

struct Pipe {
  int fds[2];
  char got[16];
};

static int Reader(spindle_task_t* self, void* arg) {
  struct Pipe* p = (struct Pipe*)arg;
  int64_t n = spindle_read(self, p->fds[0], p->got, 5, -1);
  return (int)n;
}

static int Writer(spindle_task_t* self, void* arg) {
  struct Pipe* p = (struct Pipe*)arg;
  CHECK(spindle_sleep(self, 1000000) == 0);
  return (int)spindle_write(self, p->fds[1], "hello", 5, -1);
}

/* Sleeps long; once aborted, every call says so and it returns. */
static int Sleeper(spindle_task_t* self, void* arg) {
  int* saw_cancel = (int*)arg;
  int r = spindle_sleep(self, 60ull * 1000000000ull);
  if (r == -ECANCELED) *saw_cancel = 1;
  CHECK(spindle_yield(self) == -ECANCELED);
  return 7;
}

static int FileTask(spindle_task_t* self, void* arg) {
  (void)arg;
  char path[] = "/tmp/spindle_c_api_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -errno;
  unlink(path);
  int64_t w = spindle_write(self, fd, "abcdef", 6, 0);
  int s = spindle_fsync(self, fd);
  char buf[8] = {0};
  int64_t r = spindle_read(self, fd, buf, 6, 2);
  close(fd);
  return (w == 6 && s == 0 && r == 4 && memcmp(buf, "cdef", 4) == 0) ? 0 : -1;
}

struct FromThread {
  spindle_executor_t* ex;
  spindle_spawner_t* sp;
  spindle_task_t* task;
  int rc;
  int direct_rc;
};

static int Constant(spindle_task_t* self, void* arg) {
  (void)self;
  return (int)(size_t)arg;
}

static void* SpawnFromThread(void* p) {
  struct FromThread* ft = (struct FromThread*)p;
  ft->rc = spindle_spawner_spawn(ft->sp, Constant, (void*)(size_t)41, NULL,
                                 &ft->task);
  /* Not the executor's thread: spindle_spawn refuses. */
  ft->direct_rc = spindle_spawn(ft->ex, Constant, NULL, NULL, NULL);
  return NULL;
}

static void TestErrors(void) {
  spindle_executor_t* ex = NULL;
  CHECK(spindle_executor_create(NULL, NULL) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "out is NULL") != NULL);
  CHECK(spindle_executor_destroy(NULL) == -EINVAL);
  CHECK(spindle_executor_run(NULL, 0, -1, 0) == -EINVAL);
  CHECK(spindle_spawn(NULL, Add, NULL, NULL, NULL) == -EINVAL);
  CHECK(spindle_task_join(NULL, NULL, -1) == -EINVAL);
  CHECK(spindle_task_abort(NULL) == -EINVAL);
  CHECK(spindle_task_release(NULL) == -EINVAL);
  CHECK(spindle_spawner_create(NULL, NULL) == -EINVAL);
  CHECK(spindle_spawner_destroy(NULL) == -EINVAL);
  CHECK(spindle_spawner_spawn(NULL, Add, NULL, NULL, NULL) == -EINVAL);
  CHECK(spindle_executor_stats(NULL, NULL) == -EINVAL);
  CHECK(spindle_yield(NULL) == -EINVAL);
  CHECK(spindle_yield_maybe(NULL) == -EINVAL);
  CHECK(spindle_sleep(NULL, 1) == -EINVAL);
  CHECK(spindle_read(NULL, 0, NULL, 0, -1) == -EINVAL);
  CHECK(spindle_write(NULL, 0, NULL, 0, -1) == -EINVAL);
  CHECK(spindle_fsync(NULL, 0) == -EINVAL);

  /* Bad attributes, each named in the message. */
  spindle_executor_attr_t attr;
  spindle_executor_attr_init(&attr);
  attr.reactor = 9;
  CHECK(spindle_executor_create(&attr, &ex) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "reactor 9") != NULL);
  spindle_executor_attr_init(&attr);
  uint32_t ids[1] = {5};
  uint32_t shares[1] = {0};
  attr.num_queues = 1;
  attr.queue_ids = ids;
  attr.queue_shares = shares;
  CHECK(spindle_executor_create(&attr, &ex) == -EINVAL);
  CHECK(ex == NULL);
  spindle_executor_attr_init(&attr);
  attr.size = 4; /* older than any version */
  CHECK(spindle_executor_create(&attr, &ex) == -EINVAL);

  /* A struct from a newer version: unknown trailing fields must be 0. */
  struct {
    spindle_executor_attr_t base;
    uint64_t newer_field;
  } newer;
  memset(&newer, 0, sizeof(newer));
  spindle_executor_attr_init(&newer.base);
  newer.base.size = sizeof(newer);
  newer.base.reactor = SPINDLE_REACTOR_NONE;
  CHECK(spindle_executor_create(&newer.base, &ex) == 0);
  CHECK(spindle_executor_destroy(ex) == 0);
  ex = NULL;
  newer.newer_field = 1;
  CHECK(spindle_executor_create(&newer.base, &ex) == -E2BIG);

  /* Task attributes. */
  CHECK(spindle_executor_create(NULL, &ex) == 0);
  spindle_task_attr_t ta;
  spindle_task_attr_init(&ta);
  ta.stack_size = 100;
  CHECK(spindle_spawn(ex, Add, NULL, &ta, NULL) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "stack_size 100") != NULL);
  spindle_task_attr_init(&ta);
  ta.queue = 77;
  CHECK(spindle_spawn(ex, Add, NULL, &ta, NULL) == -EINVAL);
  spindle_task_attr_init(&ta);
  ta.cpu_priority = 5;
  CHECK(spindle_spawn(ex, Add, NULL, &ta, NULL) == -EINVAL);
  CHECK(spindle_spawn(ex, NULL, NULL, NULL, NULL) == -EINVAL);
  CHECK(spindle_executor_run(ex, 0, -1, 99) == -EINVAL);
  spindle_stats_t st;
  st.size = 3;
  CHECK(spindle_executor_stats(ex, &st) == -EINVAL);
  CHECK(spindle_executor_destroy(ex) == 0);
}

int main(void) {
  CHECK(strlen(spindle_version()) >= 5);
  TestErrors();

  uint32_t ids[2] = {1, 2};
  uint32_t shares[2] = {3, 1};
  spindle_executor_attr_t attr;
  spindle_executor_attr_init(&attr);
  attr.num_queues = 2;
  attr.queue_ids = ids;
  attr.queue_shares = shares;
  spindle_executor_t* ex = NULL;
  CHECK(spindle_executor_create(&attr, &ex) == 0);
  if (ex == NULL) return 1;

  /* A task that yields and sleeps, on queue 2 at high priority. */
  int v = 41;
  spindle_task_attr_t ta;
  spindle_task_attr_init(&ta);
  ta.queue = 2;
  ta.cpu_priority = SPINDLE_PRIORITY_HIGH;
  ta.stack_size = 32 * 1024;
  ta.name = "adder";
  spindle_task_t* add = NULL;
  CHECK(spindle_spawn(ex, Add, &v, &ta, &add) == 0);
  CHECK(spindle_task_join(add, NULL, 0) == -ETIMEDOUT); /* not run yet */

  /* A pipe read by one task and written by another. */
  struct Pipe p;
  memset(&p, 0, sizeof(p));
  CHECK(pipe(p.fds) == 0);
  spindle_task_t* reader = NULL;
  CHECK(spindle_spawn(ex, Reader, &p, NULL, &reader) == 0);
  CHECK(spindle_spawn(ex, Writer, &p, NULL, NULL) == 0);
  spindle_task_t* file = NULL;
  CHECK(spindle_spawn(ex, FileTask, NULL, NULL, &file) == 0);

  /* Bounded runs: one poll, then a zero timeout, then to the end. */
  CHECK(spindle_executor_run(ex, 1, -1, 0) == SPINDLE_RUN_POLL_LIMIT);
  /* Joining an unfinished task on the thread that runs its executor could
   * never end. */
  CHECK(spindle_task_join(add, NULL, -1) == -EDEADLK);
  CHECK(strstr(spindle_last_error(), "could never finish") != NULL);
  int r = spindle_executor_run(ex, 0, 0, 0);
  CHECK(r == SPINDLE_RUN_TIMEOUT || r == SPINDLE_RUN_DONE);
  CHECK(spindle_executor_run(ex, 0, -1, 0) == SPINDLE_RUN_DONE);

  int result = 0;
  CHECK(spindle_task_join(add, &result, -1) == 0);
  CHECK(result == 42);
  CHECK(spindle_task_join(reader, &result, -1) == 0);
  CHECK(result == 5);
  CHECK(memcmp(p.got, "hello", 5) == 0);
  CHECK(spindle_task_join(file, &result, -1) == 0);
  CHECK(result == 0);
  CHECK(spindle_task_release(add) == 0);
  CHECK(spindle_task_release(reader) == 0);
  CHECK(spindle_task_release(file) == 0);
  close(p.fds[0]);
  close(p.fds[1]);

  /* Abort of a sleeping task: its calls return -ECANCELED, join says so. */
  int saw_cancel = 0;
  spindle_task_t* sleeper = NULL;
  CHECK(spindle_spawn(ex, Sleeper, &saw_cancel, NULL, &sleeper) == 0);
  CHECK(spindle_executor_run(ex, 0, -1, SPINDLE_RUN_UNTIL_IDLE) ==
        SPINDLE_RUN_IDLE);
  CHECK(spindle_task_abort(sleeper) == 0);
  CHECK(spindle_executor_run(ex, 0, -1, 0) == SPINDLE_RUN_DONE);
  CHECK(saw_cancel == 1);
  CHECK(spindle_task_join(sleeper, &result, -1) == -ECANCELED);
  CHECK(spindle_task_release(sleeper) == 0);

  /* A spawn from another thread; a join with a timeout from there too. */
  spindle_spawner_t* sp = NULL;
  CHECK(spindle_spawner_create(ex, &sp) == 0);
  struct FromThread ft;
  memset(&ft, 0, sizeof(ft));
  ft.ex = ex;
  ft.sp = sp;
  pthread_t th;
  CHECK(pthread_create(&th, NULL, SpawnFromThread, &ft) == 0);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(ft.rc == 0);
  CHECK(ft.direct_rc == -EPERM);
  CHECK(spindle_executor_run(ex, 0, -1, 0) == SPINDLE_RUN_DONE);
  CHECK(spindle_task_join(ft.task, &result, 1000000000) == 0);
  CHECK(result == 41);
  CHECK(spindle_task_release(ft.task) == 0);

  spindle_stats_t st;
  st.size = sizeof(st);
  CHECK(spindle_executor_stats(ex, &st) == 0);
  CHECK(st.spawns == 6);
  CHECK(st.completions == 5);
  CHECK(st.cancellations == 1);
  CHECK(st.live_tasks == 0);

  /* Destroying with a task left cancels it; its handle outlives. */
  spindle_task_t* left = NULL;
  CHECK(spindle_spawn(ex, Sleeper, &saw_cancel, NULL, &left) == 0);
  CHECK(spindle_executor_destroy(ex) == 0);
  CHECK(spindle_task_join(left, NULL, 0) == -ECANCELED);
  CHECK(spindle_task_release(left) == 0);
  /* The spawner outlives its executor: a spawn is cancelled at once. */
  spindle_task_t* late = NULL;
  CHECK(spindle_spawner_spawn(sp, Constant, NULL, NULL, &late) == 0);
  CHECK(spindle_task_join(late, NULL, 1000000000) == -ECANCELED);
  CHECK(spindle_task_release(late) == 0);
  CHECK(spindle_spawner_destroy(sp) == 0);

  if (failures != 0) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("c_api_test: all checks passed\n");
  return 0;
}
