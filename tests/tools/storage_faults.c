// libstead_storage_faults.so: storage faults for crash tests, loaded with LD_PRELOAD
// into a process whose files the test wants to break. It wraps the libc calls our WAL
// and RocksDB write and sync through (write, pwrite, writev, fsync, fdatasync, rename)
// and touches only file descriptors whose path lies under one directory.
//
// Environment, read once at load:
//   STEAD_FAULTS_DIR      absolute directory whose files are faulted and tracked
//   STEAD_FAULTS_CONTROL  file whose first word is the fault in force, re-read on every
//                         call on a tracked file (absent, empty or unknown: none), so a
//                         test switches faults while the process runs
//   STEAD_FAULTS_SYNC_LOG file that gets a line per successful sync of a tracked
//                         regular file, "sync\t<size>\t<path>", and per rename into,
//                         out of or within the directory, "rename\t<from>\t<to>";
//                         tests/tools/power_loss.h reads it to emulate power loss
//
// Faults (the words of the control file):
//   write-eio           writes fail with EIO
//   write-enospc        writes fail with ENOSPC (a full disk)
//   torn-write          the next write stores only its first half, then the process
//                       is SIGKILLed (a crash in the middle of a write)
//   fsync-eio           fsync and fdatasync fail with EIO; nothing is logged
//   crash-before-fsync  the process is SIGKILLed on entering its next fsync/fdatasync
//
// sync_file_range is left alone: it promises no durability, and RocksDB probes it.
// Everything here runs in the traced process, on any thread and possibly before this
// library's constructor: it keeps no state but the environment and the looked-up libc
// functions, and reads and writes its own files with raw system calls, which are never
// wrapped (no recursion, and no fault ever applies to them).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum Fault { kNone, kWriteEio, kWriteEnospc, kTornWrite, kFsyncEio, kCrashBeforeFsync };

static const char* tracked_dir;  // without a trailing '/'; NULL: track nothing
static size_t tracked_dir_length;
static const char* control_file;
static const char* sync_log;

__attribute__((constructor)) static void ReadEnvironment(void) {
  const char* dir = getenv("STEAD_FAULTS_DIR");
  if (dir != NULL && dir[0] == '/') {
    size_t length = strlen(dir);
    while (length > 1 && dir[length - 1] == '/') --length;
    tracked_dir_length = length;
    tracked_dir = dir;
  }
  control_file = getenv("STEAD_FAULTS_CONTROL");
  sync_log = getenv("STEAD_FAULTS_SYNC_LOG");
}

// The next definition of `name` after this library (libc's, or a sanitizer's wrapper),
// looked up on first use: a call may come before this library's constructor ran.
#define NEXT(name)                                                          \
  static __typeof__(&name) next_##name;                                     \
  __typeof__(&name) name##_next = __atomic_load_n(&next_##name, __ATOMIC_ACQUIRE); \
  if (name##_next == NULL) {                                                \
    name##_next = (__typeof__(&name))dlsym(RTLD_NEXT, #name);               \
    __atomic_store_n(&next_##name, name##_next, __ATOMIC_RELEASE);          \
  }

static int UnderTrackedDir(const char* path) {
  return tracked_dir != NULL && strncmp(path, tracked_dir, tracked_dir_length) == 0 &&
         (path[tracked_dir_length] == '/' || path[tracked_dir_length] == '\0');
}

// The path `fd` was opened under, into `path` (PATH_MAX bytes); 0 on success.
static int PathOfFd(int fd, char* path) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t length = readlink(link, path, PATH_MAX - 1);
  if (length < 0) return -1;
  path[length] = '\0';
  return 0;
}

static int Tracked(int fd, char* path) {
  return tracked_dir != NULL && PathOfFd(fd, path) == 0 && UnderTrackedDir(path);
}

static enum Fault FaultInForce(void) {
  if (control_file == NULL) return kNone;
  const int fd = (int)syscall(SYS_openat, AT_FDCWD, control_file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kNone;
  char word[32] = {0};
  const ssize_t length = syscall(SYS_read, fd, word, sizeof word - 1);
  syscall(SYS_close, fd);
  if (length <= 0) return kNone;
  word[strcspn(word, " \t\r\n")] = '\0';
  if (strcmp(word, "write-eio") == 0) return kWriteEio;
  if (strcmp(word, "write-enospc") == 0) return kWriteEnospc;
  if (strcmp(word, "torn-write") == 0) return kTornWrite;
  if (strcmp(word, "fsync-eio") == 0) return kFsyncEio;
  if (strcmp(word, "crash-before-fsync") == 0) return kCrashBeforeFsync;
  return kNone;
}

__attribute__((noreturn)) static void Die(void) {
  syscall(SYS_kill, getpid(), SIGKILL);
  for (;;) pause();  // SIGKILL ends every thread; this one waits for it here
}

// Appends one line to the sync log. O_APPEND with one write per line: the lines of
// concurrent threads never interleave.
static void LogLine(const char* kind, const char* first, const char* second) {
  if (sync_log == NULL) return;
  char line[2 * PATH_MAX + 32];
  const int length = snprintf(line, sizeof line, "%s\t%s\t%s\n", kind, first, second);
  if (length <= 0 || (size_t)length >= sizeof line) return;
  const int fd = (int)syscall(SYS_openat, AT_FDCWD, sync_log,
                              O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  syscall(SYS_write, fd, line, (size_t)length);
  syscall(SYS_close, fd);
}

// What a write to `fd` of `count` bytes should do: 0 to go ahead, 1 to write only the
// first `*keep` bytes and die (torn), -1 with errno set to fail.
static int BeforeWrite(int fd, size_t count, size_t* keep) {
  char path[PATH_MAX];
  if (!Tracked(fd, path)) return 0;
  switch (FaultInForce()) {
    case kWriteEio:
      errno = EIO;
      return -1;
    case kWriteEnospc:
      errno = ENOSPC;
      return -1;
    case kTornWrite:
      *keep = count / 2;  // a one-byte write is torn to nothing
      return 1;
    default:
      return 0;
  }
}

ssize_t write(int fd, const void* data, size_t count) {
  NEXT(write);
  size_t keep = 0;
  const int action = BeforeWrite(fd, count, &keep);
  if (action < 0) return -1;
  if (action == 0) return write_next(fd, data, count);
  write_next(fd, data, keep);
  Die();
}

ssize_t pwrite(int fd, const void* data, size_t count, off_t offset) {
  NEXT(pwrite);
  size_t keep = 0;
  const int action = BeforeWrite(fd, count, &keep);
  if (action < 0) return -1;
  if (action == 0) return pwrite_next(fd, data, count, offset);
  pwrite_next(fd, data, keep, offset);
  Die();
}

ssize_t pwrite64(int fd, const void* data, size_t count, off64_t offset) {
  NEXT(pwrite64);
  size_t keep = 0;
  const int action = BeforeWrite(fd, count, &keep);
  if (action < 0) return -1;
  if (action == 0) return pwrite64_next(fd, data, count, offset);
  pwrite64_next(fd, data, keep, offset);
  Die();
}

static size_t TotalLength(const struct iovec* iov, int count) {
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  return total;
}

// The first `keep` bytes of the vector, written from `offset` (-1: at the file offset).
static void WritePrefix(int fd, const struct iovec* iov, int count, size_t keep,
                        off_t offset) {
  for (int i = 0; i < count && keep > 0; ++i) {
    const size_t part = iov[i].iov_len < keep ? iov[i].iov_len : keep;
    const ssize_t written = offset < 0 ? syscall(SYS_write, fd, iov[i].iov_base, part)
                                       : syscall(SYS_pwrite64, fd, iov[i].iov_base, part, offset);
    if (written != (ssize_t)part) return;
    keep -= part;
    if (offset >= 0) offset += (off_t)part;
  }
}

ssize_t writev(int fd, const struct iovec* iov, int count) {
  NEXT(writev);
  size_t keep = 0;
  const int action = BeforeWrite(fd, TotalLength(iov, count), &keep);
  if (action < 0) return -1;
  if (action == 0) return writev_next(fd, iov, count);
  WritePrefix(fd, iov, count, keep, -1);
  Die();
}

ssize_t pwritev(int fd, const struct iovec* iov, int count, off_t offset) {
  NEXT(pwritev);
  size_t keep = 0;
  const int action = BeforeWrite(fd, TotalLength(iov, count), &keep);
  if (action < 0) return -1;
  if (action == 0) return pwritev_next(fd, iov, count, offset);
  WritePrefix(fd, iov, count, keep, offset);
  Die();
}

// Runs the sync `next` on `fd` with the fault in force, and logs a successful sync of a
// tracked regular file with the size it made durable.
static int Sync(int fd, int (*next)(int)) {
  char path[PATH_MAX];
  if (!Tracked(fd, path)) return next(fd);
  switch (FaultInForce()) {
    case kFsyncEio:
      errno = EIO;
      return -1;
    case kCrashBeforeFsync:
      Die();
    default:
      break;
  }
  const int result = next(fd);
  struct stat status;
  if (result == 0 && fstat(fd, &status) == 0 && S_ISREG(status.st_mode)) {
    char size[32];
    snprintf(size, sizeof size, "%lld", (long long)status.st_size);
    LogLine("sync", size, path);
  }
  return result;
}

int fsync(int fd) {
  NEXT(fsync);
  return Sync(fd, fsync_next);
}

int fdatasync(int fd) {
  NEXT(fdatasync);
  return Sync(fd, fdatasync_next);
}

// `path` relative to `dir_fd` made absolute, into `out` (PATH_MAX bytes); 0 on success.
static int Absolute(int dir_fd, const char* path, char* out) {
  char base[PATH_MAX];
  if (path[0] == '/') {
    base[0] = '\0';
  } else if (dir_fd == AT_FDCWD) {
    if (getcwd(base, sizeof base) == NULL) return -1;
  } else if (PathOfFd(dir_fd, base) != 0) {
    return -1;
  }
  const size_t base_length = strlen(base);
  const char* separator = base_length > 0 && base[base_length - 1] != '/' ? "/" : "";
  const int length = snprintf(out, PATH_MAX, "%s%s%s", base, separator, path);
  return length > 0 && length < PATH_MAX ? 0 : -1;
}

static void LogRename(int from_dir, const char* from, int to_dir, const char* to) {
  char from_path[PATH_MAX], to_path[PATH_MAX];
  if (sync_log == NULL || Absolute(from_dir, from, from_path) != 0 ||
      Absolute(to_dir, to, to_path) != 0) {
    return;
  }
  if (UnderTrackedDir(from_path) || UnderTrackedDir(to_path)) {
    LogLine("rename", from_path, to_path);
  }
}

int rename(const char* from, const char* to) {
  NEXT(rename);
  const int result = rename_next(from, to);
  if (result == 0) LogRename(AT_FDCWD, from, AT_FDCWD, to);
  return result;
}

int renameat(int from_dir, const char* from, int to_dir, const char* to) {
  NEXT(renameat);
  const int result = renameat_next(from_dir, from, to_dir, to);
  if (result == 0) LogRename(from_dir, from, to_dir, to);
  return result;
}
