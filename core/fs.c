/* fs.c - opening a user's files without ever blocking (FIFOs, devices), and
 * checking path options up front. */
#include "petal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *pt_file_kind(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    default: return "not a regular file";
    }
}

/* fd opened with O_NONBLOCK: keep it only if it is a regular file, then
 * make it blocking again. */
static int keep_regular(int fd, const char *path, char *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return pt_seterr(err, PT_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pt_seterr(err, PT_ERR_INVAL, "%s: %s, not a regular file", path,
                         pt_file_kind(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int pt_open_read(const char *path, char *err)
{
    if (!path || !*path) return pt_seterr(err, PT_ERR_INVAL, "empty path");
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return pt_seterr(err, errno == ENOENT ? PT_ERR_NOTFOUND : PT_ERR_IO, "%s: %s", path,
                         strerror(errno));
    return keep_regular(fd, path, err);
}

int pt_open_write(const char *path, int append, char *err)
{
    struct stat st;
    if (!path || !*path) return pt_seterr(err, PT_ERR_INVAL, "empty path");
    /* never truncate (or wait on) something that is not a regular file */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return pt_seterr(err, PT_ERR_INVAL, "%s: %s, not a regular file", path,
                         pt_file_kind(st.st_mode));
    int fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_NOCTTY | O_CLOEXEC |
                            (append ? O_APPEND : 0),
                  0644);
    if (fd < 0) {
        if (errno == ENXIO) /* a FIFO that appeared meanwhile, with no reader */
            return pt_seterr(err, PT_ERR_INVAL, "%s: a FIFO, not a regular file", path);
        return pt_seterr(err, PT_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if ((fd = keep_regular(fd, path, err)) < 0) return fd;
    if (!append && ftruncate(fd, 0) != 0) {
        int e = errno;
        close(fd);
        return pt_seterr(err, PT_ERR_IO, "%s: %s", path, strerror(e));
    }
    return fd;
}

FILE *pt_fopen_read(const char *path, char *err)
{
    int fd = pt_open_read(path, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        pt_seterr(err, PT_ERR_NOMEM, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

FILE *pt_fopen_write(const char *path, char *err)
{
    int fd = pt_open_write(path, 0, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        pt_seterr(err, PT_ERR_NOMEM, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

/* mkdir -p */
static int make_dirs(const char *path, char *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return pt_seterr(err, PT_ERR_INVAL, "path too long");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return pt_seterr(err, PT_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    return PT_OK;
}

/* Can a file be created in dir? Tried for real (root ignores permission
 * bits, read-only file systems do not). */
static int try_create(const char *dir, char *why, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.petal-write-test-%ld", dir, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(why, len, "cannot create files in %s: %s", dir, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(tmp);
    return 0;
}

int pt_check_path(const char *opt, const char *path, int kind, char *err)
{
    struct stat st;
    char why[600];
    if (!path || !*path) return pt_seterr(err, PT_ERR_INVAL, "%s: empty path", opt);
    int exists = stat(path, &st) == 0;
    int e = errno;
    switch (kind) {
    case PT_PATH_IN:
    case PT_PATH_IN_DIR:
    case PT_PATH_IN_ANY:
        if (!exists)
            return pt_seterr(err, e == ENOENT ? PT_ERR_NOTFOUND : PT_ERR_IO, "%s %s: %s", opt,
                             path, strerror(e));
        if ((kind == PT_PATH_IN && !S_ISREG(st.st_mode)) ||
            (kind == PT_PATH_IN_DIR && !S_ISDIR(st.st_mode)) ||
            (kind == PT_PATH_IN_ANY && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)))
            return pt_seterr(err, PT_ERR_INVAL, "%s %s: %s, not %s", opt, path,
                             pt_file_kind(st.st_mode),
                             kind == PT_PATH_IN       ? "a regular file"
                             : kind == PT_PATH_IN_DIR ? "a directory"
                                                      : "a regular file or a directory");
        return PT_OK;
    case PT_PATH_OUT: {
        if (exists && !S_ISREG(st.st_mode))
            return pt_seterr(err, PT_ERR_INVAL, "%s %s: %s, not a regular file", opt, path,
                             pt_file_kind(st.st_mode));
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == dir) dir[1] = 0;
        else *slash = 0;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return pt_seterr(err, PT_ERR_IO, "%s %s: %s is not a directory", opt, path, dir);
        if (try_create(dir, why, sizeof why))
            return pt_seterr(err, PT_ERR_IO, "%s %s: %s", opt, path, why);
        return PT_OK;
    }
    case PT_PATH_OUT_DIR: {
        if (exists && !S_ISDIR(st.st_mode))
            return pt_seterr(err, PT_ERR_INVAL, "%s %s: %s, not a directory", opt, path,
                             pt_file_kind(st.st_mode));
        char e2[PT_ERRLEN];
        if (!exists && make_dirs(path, e2))
            return pt_seterr(err, PT_ERR_IO, "%s %s: %s", opt, path, e2);
        if (try_create(path, why, sizeof why))
            return pt_seterr(err, PT_ERR_IO, "%s %s: %s", opt, path, why);
        return PT_OK;
    }
    default: return pt_seterr(err, PT_ERR_INVAL, "%s: bad path check", opt);
    }
}
