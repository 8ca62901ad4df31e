/* LD_PRELOAD shim for power-loss tests: after every successful fsync/fdatasync of a regular
 * file, appends "<size> <path>\n" to $CHRONIK_SYNC_LOG; after a successful syncfs, one such line
 * for every regular file the process has open (syncfs made them all durable). A power loss is then simulated after a
 * SIGKILL by truncating each file back to the size of its last sync (tests/test_power_loss.py):
 * what was written but never synced disappears, as it would from the page cache. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "<size> <path>\n" of fd into line (regular files only); its length, or 0. */
static int describe(int fd, char *line, size_t cap) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    int len = snprintf(line, cap, "%lld %s\n", (long long)st.st_size, path);
    return len > 0 && (size_t)len < cap ? len : 0;
}

static void append(const char *text, size_t len) {
    const char *log = getenv("CHRONIK_SYNC_LOG");
    if (!log || len == 0) return;
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0) return;
    /* One write with O_APPEND: lines from concurrent syncs never interleave. */
    if (write(out, text, len) < 0) { /* best effort */ }
    close(out);
}

static void record(int fd) {
    char line[PATH_MAX + 32];
    append(line, (size_t)describe(fd, line, sizeof line));
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

/* Sizes are taken before the real syncfs, which makes durable what was written before it. */
int syncfs(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
    size_t cap = 1 << 20, used = 0;
    char *lines = malloc(cap);
    DIR *fds = lines ? opendir("/proc/self/fd") : NULL;
    if (fds) {
        struct dirent *e;
        while ((e = readdir(fds)) != NULL) {
            int open_fd = atoi(e->d_name);
            if (e->d_name[0] == '.' || open_fd == dirfd(fds)) continue;
            if (cap - used < PATH_MAX + 32) {
                char *more = realloc(lines, cap * 2);
                if (!more) break;
                lines = more;
                cap *= 2;
            }
            used += (size_t)describe(open_fd, lines + used, cap - used);
        }
        closedir(fds);
    }
    int r = real(fd);
    if (r == 0 && lines) append(lines, used);
    free(lines);
    return r;
}
