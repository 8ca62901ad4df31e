/* LD_PRELOAD shim for power-loss tests: after every successful fsync/fdatasync of a regular
 * file, appends "<size> <path>\n" to $CHRONIK_SYNC_LOG. A power loss is then simulated after a
 * SIGKILL by truncating each file back to the size of its last sync (tests/test_power_loss.py):
 * what was written but never synced disappears, as it would from the page cache. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void record(int fd) {
    const char *log = getenv("CHRONIK_SYNC_LOG");
    struct stat st;
    if (!log || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    char link[64], path[PATH_MAX], line[PATH_MAX + 32];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    int len = snprintf(line, sizeof line, "%lld %s\n", (long long)st.st_size, path);
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0) return;
    /* One write of one line with O_APPEND: lines from concurrent syncs never interleave. */
    if (write(out, line, (size_t)len) < 0) { /* best effort */ }
    close(out);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int r = real(fd);
    if (r == 0) record(fd);
    return r;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int r = real(fd);
    if (r == 0) record(fd);
    return r;
}
