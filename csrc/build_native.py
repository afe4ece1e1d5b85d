"""cffi (API mode) build of vupy._native: the supervisor's kernel layer.

Run by setuptools through ``cffi_modules`` in setup.py; links libseccomp.
"""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

ffibuilder = FFI()
ffibuilder.cdef(
    """
    #define VUPY_MAX_GROUPS 1024
    struct vupy_call {
        uint64_t id;
        uint32_t pid;
        uint32_t arch;
        int32_t nr;
        uint64_t args[6];
    };
    struct vupy_creds {
        uint32_t fsuid, fsgid, egid;
        uint64_t cap_effective;
        uint32_t ngroups;
        uint32_t groups[VUPY_MAX_GROUPS];
    };
    int vupy_filter_install(int no_new_privs);
    int vupy_syscall_number(uint32_t arch, const char *name);
    int vupy_set_sync_wakeup(int listener);
    int vupy_notif_recv(int listener, struct vupy_call *call);
    int vupy_notif_id_valid(int listener, uint64_t id);
    int vupy_respond(int listener, uint64_t id, int64_t val, int error, int cont);
    int vupy_addfd_send(int listener, uint64_t id, int fd, uint32_t newfd_flags);
    ssize_t vupy_read_mem(uint32_t pid, uint64_t addr, void *buf, size_t len);
    ssize_t vupy_read_cstring(uint32_t pid, uint64_t addr, char *buf, size_t size);
    int vupy_read_creds(uint32_t tid, struct vupy_creds *creds);
    int vupy_self_creds(void);
    struct vupy_stat {
        uint64_t dev, ino;
        uint32_t mode, uid, gid;
    };
    int vupy_stat_as(int dirfd, const char *path, const struct vupy_creds *creds,
                     struct vupy_stat *out);
    int vupy_make_socket(int nsfd, uint64_t nsino, int domain, int type, int protocol,
                         const struct vupy_creds *creds);
    int vupy_setns(int fd, int nstype);
    int vupy_unshare(int flags);
    int vupy_syscall4(long nr, long a, long b, long c, long d);
    int mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const void *data);
    int prctl(int option, unsigned long arg2, unsigned long arg3,
              unsigned long arg4, unsigned long arg5);
    """
)
ffibuilder.set_source(
    "vupy._native",
    '#include <sys/mount.h>\n#include <sys/prctl.h>\n#include "supervisor.h"',
    sources=[os.path.relpath(os.path.join(HERE, "supervisor.c"))],
    include_dirs=[os.path.relpath(HERE)],
    libraries=["seccomp"],
    extra_compile_args=["-O2", "-Wall", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
